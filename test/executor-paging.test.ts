// ListActions in pages: 12,000 actions started through the real service, every
// one listed exactly once across pages, every page under gRPC's 4 MiB default,
// and the Tacker server's executor pool reading them all through the pages.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { createChannel, createClient, Status } from 'nice-grpc';
import { msToDuration } from '../common/duration.js';
import { createGrpcServer, serviceEntry } from '../common/grpc-server.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { ExecutorServiceDefinition, ListActionsResponse, type ExecutorServiceClient } from '../gen/vimmon/executor/v1/executor_service.js';
import { startExecutor } from '../executor/main.js';
import { createExecutorPool } from '../server/executors.js';
import { testLogger } from './support/logger.js';

const total = 12_000;
/**
 * Actions whose auth_url is 2,000 characters long: 5,000 actions of this mix
 * would encode to about 5.5 MB, so pages of 5,000 are cut by size, not by count.
 */
const longUrls = 5_000;
const fourMiB = 4 * 1024 * 1024;

async function grpcCode(t: import('ava').ExecutionContext, p: Promise<unknown>, code: Status, field: string): Promise<void> {
  const err = (await t.throwsAsync(p)) as unknown as { code: Status; details: string };
  t.is(err.code, code, err.details);
  t.true(err.details.startsWith(`${field}:`), err.details);
}

async function listAll(client: ExecutorServiceClient, pageSize: number, vimIds: string[] = []) {
  const ids: string[] = [];
  const pages: Array<{ count: number; bytes: number }> = [];
  let pageToken = '';
  do {
    const r = await client.listActions({ vimIds, pageSize, pageToken });
    pages.push({ count: r.actions.length, bytes: ListActionsResponse.encode(r).finish().length });
    ids.push(...r.actions.map((a) => a.actionId));
    pageToken = r.nextPageToken;
  } while (pageToken);
  return { ids, pages };
}

test('ListActions pages 12,000 actions: each listed once, in order, every page under 4 MiB', async (t) => {
  const logger = testLogger();
  // A conductor that stores whatever it is told, and one listener every action probes.
  const conductor = createGrpcServer({
    logger,
    shutdownGraceMs: 500,
    services: [serviceEntry(VimMonitorAction2ConductorDefinition, { updateVim: async (r) => ({ status: r.status }) })],
  });
  const conductorPort = await conductor.listen('127.0.0.1:0');
  const target = net.createServer((s) => s.on('error', () => {}).destroy());
  await new Promise<void>((r) => target.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => r()));
  const url = `http://127.0.0.1:${(target.address() as AddressInfo).port}/v3`;
  const executor = await startExecutor({ logger, address: '127.0.0.1:0', conductorTarget: `127.0.0.1:${conductorPort}` });
  const channel = createChannel(executor.address);
  const pool = createExecutorPool({ executors: [executor.address], logger });
  t.teardown(async () => {
    pool.close();
    channel.close();
    await executor.stop();
    await conductor.shutdown();
    await new Promise<void>((r) => target.close(() => r()));
  });
  const client = createClient(ExecutorServiceDefinition, channel);

  // An hour between rounds: each action probes once and then sleeps.
  const monitor = { interval: msToDuration(3_600_000), timeout: msToDuration(1_000), reportInterval: msToDuration(3_600_000) };
  const started: string[] = [];
  const vimIds: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < total) {
        const i = next++;
        const actionId = randomUUID();
        const vimId = randomUUID();
        const authUrl = i < longUrls ? `${url}?${'x'.repeat(2_000 - url.length - 1)}` : url;
        await client.startAction({ actionId, vimId, authUrl, monitor, knownStatus: VimStatus.VIM_STATUS_PENDING });
        started.push(actionId);
        vimIds.push(vimId);
      }
    }),
  );
  t.is(executor.stats().actions, total);
  const expected = [...started].sort();

  // The default page (1,000) and the largest (5,000): the same actions, once each, in action id order.
  for (const pageSize of [0, 5_000]) {
    const { ids, pages } = await listAll(client, pageSize);
    t.is(ids.length, total, `page_size ${pageSize}`);
    t.deepEqual(ids, expected, `page_size ${pageSize}: every action once, ordered by action_id`);
    for (const p of pages) t.true(p.bytes < fourMiB, `page_size ${pageSize}: a page of ${p.count} is ${p.bytes} bytes`);
    t.true(pages.every((p) => p.count <= (pageSize || 1_000)));
    if (pageSize === 0) t.is(pages.length, total / 1_000);
    // 5,000 actions of this mix do not fit in 4 MiB: the page is cut by its encoded size.
    if (pageSize === 5_000) t.true(pages.length > Math.ceil(total / 5_000), `${pages.length} pages: ${JSON.stringify(pages)}`);
  }

  // A page size over the maximum is the maximum; with a VIM filter, pages go by action id too.
  const big = await client.listActions({ pageSize: 1_000_000 });
  t.true(big.actions.length <= 5_000);
  const some = vimIds.slice(0, 7);
  const filtered = await listAll(client, 2, some);
  t.is(filtered.ids.length, 7);
  t.is(filtered.pages.length, 4);
  t.deepEqual(filtered.ids, [...filtered.ids].sort());

  // Bad paging input names its field.
  await grpcCode(t, client.listActions({ pageSize: -1 }), Status.INVALID_ARGUMENT, 'page_size');
  await grpcCode(t, client.listActions({ pageToken: 'garbage' }), Status.INVALID_ARGUMENT, 'page_token');
  await grpcCode(
    t,
    client.listActions({ pageToken: Buffer.from('not-an-action-id').toString('base64url') }),
    Status.INVALID_ARGUMENT,
    'page_token',
  );

  // The Tacker server's view of the executor, read page by page.
  const running = await pool.runningActions(executor.address, 30_000);
  t.is(running.actions.size, total);
  t.true(started.every((id) => running.actions.has(id)));
  t.regex(running.instanceId, /^[0-9a-f-]{36}$/);
  t.is(await pool.instanceId(executor.address, 5_000), running.instanceId, 'the same process: the same instance id');
});

test('ListActions: a token past the last action gives an empty last page; stopped actions drop out between pages', async (t) => {
  const logger = testLogger();
  const conductor = createGrpcServer({
    logger,
    shutdownGraceMs: 500,
    services: [serviceEntry(VimMonitorAction2ConductorDefinition, { updateVim: async (r) => ({ status: r.status }) })],
  });
  const conductorPort = await conductor.listen('127.0.0.1:0');
  const executor = await startExecutor({ logger, address: '127.0.0.1:0', conductorTarget: `127.0.0.1:${conductorPort}` });
  const channel = createChannel(executor.address);
  t.teardown(async () => {
    channel.close();
    await executor.stop();
    await conductor.shutdown();
  });
  const client = createClient(ExecutorServiceDefinition, channel);
  const monitor = { interval: msToDuration(3_600_000), timeout: msToDuration(100), reportInterval: msToDuration(3_600_000) };
  const ids: string[] = [];
  for (let i = 0; i < 10; i++) {
    const actionId = randomUUID();
    await client.startAction({
      actionId,
      vimId: randomUUID(),
      authUrl: 'http://127.0.0.1:9/v3',
      monitor,
      knownStatus: VimStatus.VIM_STATUS_PENDING,
    });
    ids.push(actionId);
  }
  ids.sort();
  const first = await client.listActions({ pageSize: 4 });
  t.deepEqual(
    first.actions.map((a) => a.actionId),
    ids.slice(0, 4),
  );
  // Stop one already listed and one not yet listed: neither repeats, the unlisted one is gone.
  await client.stopAction({ actionId: ids[1]! });
  await client.stopAction({ actionId: ids[5]! });
  const second = await client.listActions({ pageSize: 4, pageToken: first.nextPageToken });
  t.deepEqual(
    second.actions.map((a) => a.actionId),
    [ids[4], ids[6], ids[7], ids[8]],
  );
  const third = await client.listActions({ pageSize: 4, pageToken: second.nextPageToken });
  t.deepEqual(
    third.actions.map((a) => a.actionId),
    [ids[9]],
  );
  t.is(third.nextPageToken, '');
  const past = await client.listActions({ pageToken: Buffer.from('ffffffff-ffff-4fff-bfff-ffffffffffff').toString('base64url') });
  t.deepEqual(past, { actions: [], nextPageToken: '', instanceId: past.instanceId });
  t.not(past.instanceId, '', 'every page names the executor process');
});

test("the servers' listing gives each page the deadline: a large executor on a slow machine is listed whole, a page that hangs is cut", async (t) => {
  const logger = testLogger();
  const instanceId = randomUUID();
  const pages = 4;
  const pageDelayMs = 500;
  let hang = false;
  // ListActions that takes pageDelayMs for each page of one action: the whole listing takes
  // pages × pageDelayMs, longer than the deadline below, and each page a third of it.
  const server = createGrpcServer({
    logger,
    shutdownGraceMs: 100,
    services: [
      serviceEntry(ExecutorServiceDefinition, {
        async startAction() {
          throw new Error('not used');
        },
        async stopAction() {
          return { stopped: false };
        },
        async listActions(r, context) {
          const page = r.pageToken === '' ? 0 : Number(Buffer.from(r.pageToken, 'base64url').toString());
          // Ended by the caller's deadline too, so that a hung page leaves no timer behind.
          await sleep(hang && page === 2 ? 60_000 : pageDelayMs, undefined, { signal: context.signal }).catch(() => {});
          if (context.signal.aborted) throw new Error('cancelled');
          return {
            actions: [{ actionId: `00000000-0000-4000-8000-00000000000${page}`, vimId: randomUUID() }],
            nextPageToken: page + 1 < pages ? Buffer.from(String(page + 1)).toString('base64url') : '',
            instanceId,
          };
        },
        async *watchActions() {},
      }),
    ],
  });
  const port = await server.listen('127.0.0.1:0');
  t.teardown(() => server.shutdown());
  const pool = createExecutorPool({ executors: [`127.0.0.1:${port}`], logger });
  t.teardown(() => pool.close());

  const deadlineMs = 1_500;
  const started = performance.now();
  const running = await pool.runningActions(`127.0.0.1:${port}`, deadlineMs);
  const tookMs = performance.now() - started;
  t.is(running.actions.size, pages);
  t.is(running.instanceId, instanceId);
  t.true(tookMs > deadlineMs, `the whole listing (${Math.round(tookMs)} ms) was longer than one deadline`);

  hang = true;
  const hungAt = performance.now();
  await t.throwsAsync(pool.runningActions(`127.0.0.1:${port}`, deadlineMs));
  t.true(performance.now() - hungAt < 30_000, 'a hung page is cut at its deadline, not waited for');
});
