// WatchVims under hostile and ordinary use, against the real mesh (PostgreSQL,
// conductor, executor, Tacker server) and real TCP targets: resume by
// after_event_id, streams that do not read, memory, send_initial in pages,
// visibility. The streams go to a second Tacker server built here from the same
// parts as server/main.ts, so that its watch hub can be looked at.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import v8 from 'node:v8';
import vm from 'node:vm';
import * as grpc from '@grpc/grpc-js';
import test, { type ExecutionContext } from 'ava';
import { createChannel, createClient, type ClientError, Status, type Channel } from 'nice-grpc';
import { msToDuration as ms } from '../common/duration.js';
import { createGrpcServer, serviceEntry } from '../common/grpc-server.js';
import type { Orm } from '../db/connection.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition, type VimMonitorAction2ConductorClient } from '../gen/vimmon/conductor/v1/conductor.js';
import {
  VimServiceDefinition,
  WatchVimsRequest,
  WatchVimsResponse,
  type MonitorPolicy,
  type VimEvent as VimEventMessage,
  type VimServiceClient,
} from '../gen/vimmon/tacker/v1/vim_service.js';
import { createExecutorPool } from '../server/executors.js';
import { createHandoff } from '../server/handoff.js';
import { createVimService } from '../server/service.js';
import { createVimWatch, resumeTrailer } from '../server/vim-watch.js';
import { createWatchHub, messageBytes, type WatchHub } from '../server/watch-hub.js';
import { testLogger } from './support/logger.js';
import { startMesh, type Mesh } from './support/mesh.js';
import { openTcpTarget, type TcpTarget } from './support/targets.js';
import { eventually } from './support/wait.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const sleep = (msToWait: number) => new Promise((r) => setTimeout(r, msToWait));

/** Probes every 200 ms: a closed target is UNREACHABLE within about half a second. */
const fast: Partial<MonitorPolicy> = { interval: ms(200), timeout: ms(100), reportInterval: ms(60_000) };
/** One probe, then nothing for an hour: the statuses are what the conductor client writes. */
const quiet: Partial<MonitorPolicy> = { interval: ms(3_600_000), timeout: ms(500), reportInterval: ms(3_600_000) };

interface Vim {
  id: string;
  actionId: string;
}

// ---------------------------------------------------------------- harness

interface WatchServer {
  address: string;
  hub: WatchHub;
  client: VimServiceClient;
}

/** A Tacker server on the mesh's database whose hub the test can see. */
async function startWatchServer(t: ExecutionContext, mesh: Mesh): Promise<WatchServer> {
  const logger = testLogger();
  const orm = await mesh.db.open();
  const pool = createExecutorPool({ executors: mesh.executorAddresses, logger });
  const handoff = createHandoff({ orm, pool, logger });
  const hub = createWatchHub({ databaseUrl: mesh.db.url, logger });
  const loops = new AbortController();
  const running = hub.run(loops.signal);
  const service = createVimService({ orm, key: Buffer.alloc(32, 3), pool, handoff, hub, logger });
  const server = createGrpcServer({ logger, shutdownGraceMs: 1_000, services: [serviceEntry(VimServiceDefinition, service)] });
  const address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
  await hub.ready();
  const channel = createChannel(address);
  t.teardown(async () => {
    channel.close();
    await server.shutdown();
    loops.abort();
    await running;
    pool.close();
  });
  return { address, hub, client: createClient(VimServiceDefinition, channel) };
}

function conductorClient(t: ExecutionContext, mesh: Mesh): VimMonitorAction2ConductorClient {
  const channel: Channel = createChannel(mesh.conductors[0]!.address);
  t.teardown(() => channel.close());
  return createClient(VimMonitorAction2ConductorDefinition, channel);
}

async function registerVims(mesh: Mesh, count: number, url: string, monitor: Partial<MonitorPolicy>, prefix: string): Promise<Vim[]> {
  const vims: Vim[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(count, 16) }, async () => {
      while (next < count) {
        const i = next++;
        const { vim } = await mesh.vims().registerVim({ name: `${prefix}-${i}`, authUrl: url, monitor });
        vims.push({ id: vim!.id, actionId: vim!.actionId });
      }
    }),
  );
  return vims;
}

const uuidArray = (ids: string[]) => `{${ids.join(',')}}`;

/** Waits until every VIM's first probe round is stored (no longer PENDING). */
async function settled(mesh: Mesh, vims: Vim[]): Promise<void> {
  await eventually(
    async () => {
      const [{ n }] = await mesh.query<{ n: number }>(
        `select count(*)::int as n from vim where id = any(?::uuid[]) and status = 'PENDING'`,
        [uuidArray(vims.map((v) => v.id))],
      );
      return n === 0;
    },
    15_000,
    'every VIM probed once',
  );
}

/**
 * Writes `reports` status reports through the conductor, each VIM alternating
 * between REACHABLE and UNREACHABLE from its stored status (each a transition).
 * Each of `concurrency` writers owns its own VIMs.
 */
async function flap(mesh: Mesh, conductor: VimMonitorAction2ConductorClient, vims: Vim[], reports: number, concurrency = 8): Promise<void> {
  const rows = await mesh.query<{ id: string; status: string; action_id: string }>(
    `select id, status, action_id from vim where id = any(?::uuid[])`,
    [uuidArray(vims.map((v) => v.id))],
  );
  const state = new Map(rows.map((r) => [r.id, { status: r.status, actionId: r.action_id }]));
  const writers = Math.min(concurrency, vims.length);
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      const own = vims.filter((_, i) => i % writers === w);
      for (let i = 0; i < Math.ceil(reports / writers); i++) {
        const vim = own[i % own.length]!;
        const s = state.get(vim.id)!;
        const status = s.status === 'REACHABLE' ? VimStatus.VIM_STATUS_UNREACHABLE : VimStatus.VIM_STATUS_REACHABLE;
        await conductor.updateVim({ vimId: vim.id, actionId: s.actionId, status });
        s.status = status === VimStatus.VIM_STATUS_REACHABLE ? 'REACHABLE' : 'UNREACHABLE';
      }
    }),
  );
}

async function eventIds(mesh: Mesh, after: number): Promise<number[]> {
  const rows = await mesh.query<{ id: string }>(`select id from vim_event where id > ? order by id`, [after]);
  return rows.map((r) => Number(r.id));
}

async function maxEventId(mesh: Mesh): Promise<number> {
  const [{ id }] = await mesh.query<{ id: string }>(`select coalesce(max(id), 0) as id from vim_event`);
  return Number(id);
}

/** Reads a nice-grpc stream in the background. */
function collect(client: VimServiceClient, request: Partial<WatchVimsRequest>) {
  const abort = new AbortController();
  const messages: WatchVimsResponse[] = [];
  const ended = (async () => {
    for await (const m of client.watchVims(request, { signal: abort.signal })) messages.push(m);
  })().then(
    () => undefined,
    (err: unknown) => err as { code?: Status; details?: string; name?: string },
  );
  return { messages, ended, abort: () => abort.abort() };
}

/** A grpc-js client on a connection of its own, for streams the test does not read. */
function rawClient(t: ExecutionContext, address: string): grpc.Client {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  t.teardown(() => client.close());
  return client;
}

function openUnread(client: grpc.Client, request: Partial<WatchVimsRequest>): grpc.ClientReadableStream<WatchVimsResponse> {
  const stream = client.makeServerStreamRequest<WatchVimsRequest, WatchVimsResponse>(
    '/vimmon.tacker.v1.VimService/WatchVims',
    (r) => Buffer.from(WatchVimsRequest.encode(r).finish()),
    (b) => WatchVimsResponse.decode(b),
    WatchVimsRequest.fromPartial(request),
  );
  stream.on('error', () => {}); // read later, by readAll
  // grpc-js pauses a call's HTTP/2 stream only once its read loop has started: a
  // stream never asked for data takes in everything the server sends (and holds it
  // in the client). One read(0) starts the loop; grpc-js then takes 16 messages into
  // the stream's buffer, nobody reads them, and HTTP/2 flow control holds the server.
  stream.read(0);
  return stream;
}

/** Reads what a raw stream holds to its end. */
function readAll(
  stream: grpc.ClientReadableStream<WatchVimsResponse>,
): Promise<{ messages: WatchVimsResponse[]; error?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    const messages: WatchVimsResponse[] = [];
    stream.on('data', (m: WatchVimsResponse) => messages.push(m));
    stream.on('error', (error: grpc.ServiceError) => resolve({ messages, error }));
    stream.on('end', () => resolve({ messages }));
  });
}

async function openTargets(t: ExecutionContext, n: number): Promise<TcpTarget[]> {
  const targets = await Promise.all(Array.from({ length: n }, () => openTcpTarget()));
  t.teardown(async () => {
    for (const target of targets) await target.close();
  });
  return targets;
}

// ---------------------------------------------------------------- tests

test('resume with after_event_id after a disconnect: every stored transition once, then live ones', async (t) => {
  const mesh = await startMesh(t);
  const server = await startWatchServer(t, mesh);
  const targets = await openTargets(t, 3);
  const vims: Vim[] = [];
  for (const [i, target] of targets.entries()) vims.push((await registerVims(mesh, 1, target.url, fast, `flap${i}`))[0]!);
  await settled(mesh, vims);

  // A watcher sees vim 0 go down, then goes away.
  const first = collect(server.client, {});
  await eventually(() => server.hub.listenerCount === 1, 5_000, 'the first stream subscribed');
  await targets[0]!.close();
  const down = await eventually(
    () => first.messages.find((m) => m.vimId === vims[0]!.id && m.status === VimStatus.VIM_STATUS_UNREACHABLE),
    5_000,
    'vim 0 down',
  );
  first.abort();
  await first.ended;
  await eventually(() => server.hub.listenerCount === 0, 2_000, 'the stream unsubscribed');
  const lastSeen = first.messages.at(-1)!.eventId;
  t.true(lastSeen >= down.eventId);

  // While it is away: three transitions.
  await targets[1]!.close();
  await targets[0]!.reopen();
  await targets[2]!.close();
  const missed = await eventually(
    async () => {
      const ids = await eventIds(mesh, lastSeen);
      return ids.length >= 3 && ids;
    },
    10_000,
    'three transitions stored while away',
  );
  await sleep(500); // nothing else in flight
  const stored = await eventIds(mesh, lastSeen);
  t.deepEqual(stored, missed);

  const resumed = collect(server.client, { afterEventId: lastSeen });
  await eventually(() => resumed.messages.length >= stored.length, 5_000, 'the replay');
  t.deepEqual(
    resumed.messages.map((m) => m.eventId),
    stored,
    'each stored transition once, in order',
  );
  const rows = await mesh.query<{ vim_id: string; to_status: string }>(`select vim_id, to_status from vim_event where id > ? order by id`, [
    lastSeen,
  ]);
  t.deepEqual(
    resumed.messages.map((m) => [m.vimId, m.status]),
    rows.map((r) => [r.vim_id, r.to_status === 'REACHABLE' ? VimStatus.VIM_STATUS_REACHABLE : VimStatus.VIM_STATUS_UNREACHABLE]),
  );

  // Then live.
  await targets[1]!.reopen();
  const live = await eventually(
    () => resumed.messages.find((m) => m.vimId === vims[1]!.id && m.eventId > stored.at(-1)!),
    5_000,
    'vim 1 back, live',
  );
  t.is(live.status, VimStatus.VIM_STATUS_REACHABLE);
  await sleep(500);
  const ids = resumed.messages.map((m) => m.eventId);
  t.is(new Set(ids).size, ids.length, 'no duplicate');
  t.deepEqual(ids, await eventIds(mesh, lastSeen));
  resumed.abort();
  await resumed.ended;
  await eventually(() => server.hub.listenerCount === 0, 2_000, 'nothing left subscribed');
});

test('ListVimEvents pages through the stored transitions of one VIM, as WatchVims delivered them', async (t) => {
  const mesh = await startMesh(t);
  const server = await startWatchServer(t, mesh);
  const [target, other] = await openTargets(t, 2);
  const [vim] = await registerVims(mesh, 1, target!.url, fast, 'history');
  const [neighbour] = await registerVims(mesh, 1, other!.url, fast, 'neighbour');
  await settled(mesh, [vim!, neighbour!]);
  const watcher = collect(server.client, { vimIds: [vim!.id] });
  await eventually(() => server.hub.listenerCount === 1, 5_000, 'the stream subscribed');
  // Down, up, down: three transitions of this VIM; the neighbour's go elsewhere.
  await target!.close();
  await other!.close();
  await eventually(() => watcher.messages.some((m) => m.status === VimStatus.VIM_STATUS_UNREACHABLE), 5_000, 'down');
  await target!.reopen();
  await eventually(() => watcher.messages.length >= 2, 5_000, 'up');
  await target!.close();
  await eventually(() => watcher.messages.length >= 3, 5_000, 'down again');

  const pages: VimEventMessage[][] = [];
  let pageToken = '';
  do {
    const page = await server.client.listVimEvents({ vimId: vim!.id, pageSize: 1, pageToken });
    pages.push(page.events);
    pageToken = page.nextPageToken;
  } while (pageToken && pages.length < 100);
  const listed = pages.flat();
  t.true(
    pages.every((p) => p.length === 1),
    'one event per page of size 1',
  );
  // The first transition (PENDING to REACHABLE) came before the watch; the rest are what it saw.
  t.is(listed[0]!.previousStatus, VimStatus.VIM_STATUS_PENDING);
  const watched = listed.filter((e) => watcher.messages.some((m) => m.eventId === e.eventId));
  t.deepEqual(
    watched.map((e) => [e.eventId, e.vimId, e.vimName, e.previousStatus, e.status, e.actionId, e.changedAt?.getTime()]),
    watcher.messages
      .slice(0, watched.length)
      .map((m) => [m.eventId, m.vimId, m.vimName, m.previousStatus, m.status, m.actionId, m.changedAt?.getTime()]),
  );
  t.true(watched.length >= 3);
  t.true(listed.every((e) => e.vimId === vim!.id));
  t.deepEqual(
    listed.map((e) => e.eventId),
    [...listed.map((e) => e.eventId)].sort((a, b) => a - b),
    'oldest first',
  );
  const unknown = await server.client.listVimEvents({ vimId: randomUUID() }).catch((e: unknown) => e);
  t.is((unknown as ClientError).code, Status.NOT_FOUND);
  const bad = await server.client.listVimEvents({ vimId: vim!.id, pageToken: 'not-a-token' }).catch((e: unknown) => e);
  t.is((bad as ClientError).code, Status.INVALID_ARGUMENT);
  t.regex((bad as ClientError).details, /page_token/);
  watcher.abort();
  await watcher.ended;
});

test('a resume that overlaps transitions being written delivers each change exactly once', async (t) => {
  const mesh = await startMesh(t);
  const server = await startWatchServer(t, mesh);
  const [target] = await openTargets(t, 1);
  const vims = await registerVims(mesh, 20, target!.url, quiet, 'overlap');
  await settled(mesh, vims);
  const conductor = conductorClient(t, mesh);
  const after = await maxEventId(mesh);
  await flap(mesh, conductor, vims, 1_200); // a backlog of a few pages

  // Resume while as many again are written: replayed pages and live changes overlap.
  const writing = flap(mesh, conductor, vims, 1_500);
  const stream = collect(server.client, { afterEventId: after });
  await writing;
  const expected = await eventIds(mesh, after);
  t.true(expected.length >= 2_600, `${expected.length} transitions`);
  await eventually(() => stream.messages.length >= expected.length, 20_000, `${expected.length} changes`);
  await sleep(500);
  const ids = stream.messages.map((m) => m.eventId);
  t.is(new Set(ids).size, ids.length, 'no duplicate');
  t.deepEqual(
    [...ids].sort((a, b) => a - b),
    expected,
    'no gap',
  );
  stream.abort();
  await stream.ended;
  await eventually(() => server.hub.listenerCount === 0, 2_000, 'nothing left subscribed');
});

test('a stream that does not read is cut while a reading one gets everything; it then reads RESOURCE_EXHAUSTED with its resume point', async (t) => {
  const mesh = await startMesh(t);
  const server = await startWatchServer(t, mesh);
  const [target] = await openTargets(t, 1);
  const vims = await registerVims(mesh, 20, target!.url, quiet, 'slow');
  await settled(mesh, vims);
  const conductor = conductorClient(t, mesh);

  const start = await maxEventId(mesh);
  const reader = collect(server.client, {});
  await eventually(() => server.hub.listenerCount === 1, 5_000, 'the reader subscribed');
  const slow = openUnread(rawClient(t, server.address), {});
  await eventually(() => server.hub.listenerCount === 2, 5_000, 'the slow stream subscribed');

  // At ~330 estimated bytes a change, 1 MiB is ~3,200 changes, after the ~600 HTTP/2 lets out.
  await flap(mesh, conductor, vims, 6_000);
  await eventually(() => server.hub.listenerCount === 1, 10_000, 'the slow stream cut from the fan-out');
  const expected = await eventIds(mesh, start);
  await eventually(() => reader.messages.length >= expected.length, 20_000, `the reader's ${expected.length} changes`);
  t.deepEqual(
    reader.messages.map((m) => m.eventId).sort((a, b) => a - b),
    expected,
    'the reader got every change once',
  );

  const { messages, error } = await readAll(slow);
  t.is(error?.code, grpc.status.RESOURCE_EXHAUSTED, error?.details);
  const point = Number(/resume with after_event_id=(\d+)/.exec(error?.details ?? '')?.[1]);
  t.true(Number.isInteger(point), error?.details);
  t.deepEqual(error!.metadata.get(resumeTrailer), [String(point)]);
  t.true(messages.length > 0 && messages.length < expected.length, `the slow stream got ${messages.length} before it was cut`);
  t.deepEqual(
    messages.map((m) => m.eventId),
    reader.messages.slice(0, messages.length).map((m) => m.eventId),
    'what it got is what the reader got first',
  );
  t.true(point <= Math.max(...messages.map((m) => m.eventId)));

  // Resuming from the point misses nothing (it may repeat a change that committed out of id order).
  const resumed = collect(server.client, { afterEventId: point });
  const rest = expected.filter((id) => id > point);
  await eventually(() => resumed.messages.length >= rest.length, 20_000, `the ${rest.length} changes after ${point}`);
  t.deepEqual(
    resumed.messages.map((m) => m.eventId),
    rest,
  );
  const union = new Set([...messages.map((m) => m.eventId), ...resumed.messages.map((m) => m.eventId)]);
  t.true(
    expected.every((id) => union.has(id)),
    'nothing lost across the cut',
  );
  resumed.abort();
  reader.abort();
  await Promise.all([resumed.ended, reader.ended]);
  await eventually(() => server.hub.listenerCount === 0, 2_000, 'nothing left subscribed');
});

test('memory: 200 streams that do not read stay within the computed bound while thousands of changes pass', async (t) => {
  const mesh = await startMesh(t);
  const server = await startWatchServer(t, mesh);
  const [target] = await openTargets(t, 1);
  const vims = await registerVims(mesh, 20, target!.url, quiet, 'mem');
  await settled(mesh, vims);
  const conductor = conductorClient(t, mesh);

  const streamsCount = 200;
  gc();
  const baseline = process.memoryUsage().heapUsed;
  // The clients in a process of their own: this heap is the server's.
  const clients = startUnreadingClients(t, server.address, streamsCount);
  await eventually(() => server.hub.listenerCount === streamsCount, 10_000, 'every stream subscribed');
  await sleep(500);

  let peak = 0;
  const samples: number[] = [];
  const sample = () => {
    gc();
    const growth = process.memoryUsage().heapUsed - baseline;
    samples.push(Math.round(growth / 2 ** 10));
    peak = Math.max(peak, growth);
  };
  sample(); // the streams themselves, before any change
  for (let i = 0; i < 16; i++) {
    await flap(mesh, conductor, vims, 500);
    sample();
  }
  await eventually(() => server.hub.listenerCount === 0, 10_000, 'every stream cut from the fan-out');
  sample();

  // The bound of server/vim-watch.ts at its defaults: per stream, its queue's slots
  // (at most 1 MiB / the smallest message, 8 bytes each, half again for the array's
  // spare room), what gRPC holds for a stream that does not read (16 messages
  // in grpc-js, the 64 KiB HTTP/2 window) and the call itself (~30 KB measured);
  // plus one copy of the messages, which these streams share.
  const [sample0] = await mesh.query<{ id: string; name: string; action_id: string }>(`select id, name, action_id from vim limit 1`);
  const smallest = messageBytes({ vimId: sample0!.id, vimName: sample0!.name, actionId: sample0!.action_id } as WatchVimsResponse);
  const slots = Math.min(10_000, Math.floor((1024 * 1024) / smallest));
  const perStream = slots * 8 * 1.5 + 16 * 400 + 64 * 1024 + 32 * 1024;
  const bound = streamsCount * perStream + 1024 * 1024;
  const changes = (await eventIds(mesh, 0)).length;
  // Every stream with a copy of every change, as before: what the bound prevents.
  const unbounded = streamsCount * changes * 330;
  t.log(`samples KiB ${samples.join(' ')}; listeners ${server.hub.listenerCount}`);
  t.log(
    `heap growth ${(peak / 2 ** 20).toFixed(1)} MiB; bound ${(bound / 2 ** 20).toFixed(1)} MiB; ${changes} changes; a copy per stream would be ${(unbounded / 2 ** 20).toFixed(0)} MiB`,
  );
  // Measured well inside the bound (about a quarter of it); an order of magnitude is the promise.
  t.true(peak <= bound, `heap grew ${peak} bytes; bound ${bound}`);
  t.true(10 * bound < unbounded, 'the test tells bounded from unbounded');

  const ended = await clients.readAll();
  t.deepEqual(ended, { RESOURCE_EXHAUSTED: streamsCount }, 'every stream, once read, ends RESOURCE_EXHAUSTED');
});

test('send_initial over 1,200 VIMs arrives complete, read in pages', async (t) => {
  const mesh = await startMesh(t);
  const server = await startWatchServer(t, mesh);
  const [target] = await openTargets(t, 1);
  const [template] = await registerVims(mesh, 1, target!.url, quiet, 'template');
  // 1,199 more rows like it, straight into the table (no actions: executor unset, started, an hour to stale).
  const columns = (
    await mesh.query<{ column_name: string }>(
      `select column_name from information_schema.columns where table_name = 'vim' order by ordinal_position`,
    )
  ).map((c) => c.column_name);
  const value: Record<string, string> = {
    id: 'gen_random_uuid()',
    name: `'bulk-' || g`,
    action_id: 'gen_random_uuid()',
    is_default: 'false',
    executor: 'null',
    action_started: 'true',
  };
  await mesh.query(
    `insert into vim (${columns.join(', ')}) select ${columns.map((c) => value[c] ?? `v.${c}`).join(', ')} from vim v, generate_series(1, 1199) g where v.id = ?`,
    [template!.id],
  );
  const live = (await mesh.query<{ id: string }>(`select id from vim where deleted_at is null order by id`)).map((r) => r.id);
  t.is(live.length, 1_200);

  // Through gRPC: every VIM once, with event_id 0, in id order.
  const stream = collect(server.client, { sendInitial: true });
  await eventually(() => stream.messages.length >= 1_200, 20_000, 'the initial state');
  const initial = stream.messages.slice(0, 1_200);
  t.true(initial.every((m) => m.eventId === 0));
  t.deepEqual(
    initial.map((m) => m.vimId),
    live,
  );
  stream.abort();
  await stream.ended;

  // The reads behind it: pages, never the whole table. A stream not read holds only the first.
  const reads: number[] = [];
  const watch = createVimWatch({ orm: countingOrm(mesh.db.orm, reads), hub: server.hub, logger: testLogger() });
  const abort = new AbortController();
  const unread = watch.watch(WatchVimsRequest.fromPartial({ sendInitial: true }), abort.signal, () => true);
  await unread.next();
  t.deepEqual(reads, [50], 'one small page for a stream that is not read');
  let n = 1;
  while (n < 1_200) {
    await unread.next();
    n++;
  }
  t.true(reads.length >= 3 && reads.every((r) => r <= 500), `pages of ${reads.join(', ')}`);
  t.is(
    reads.reduce((a, b) => a + b, 0),
    1_200,
  );
  abort.abort();
  t.true((await unread.next()).done);
  t.is(server.hub.listenerCount, 0);
});

test('visible() filters the initial state, replayed changes and live ones', async (t) => {
  const mesh = await startMesh(t);
  const server = await startWatchServer(t, mesh);
  const [target] = await openTargets(t, 1);
  const vims = await registerVims(mesh, 4, target!.url, quiet, 'own');
  await settled(mesh, vims);
  const red = vims.slice(0, 2).map((v) => v.id);
  await mesh.query(`update vim set owner_project = case when id = any(?::uuid[]) then 'red' else 'blue' end where id = any(?::uuid[])`, [
    uuidArray(red),
    uuidArray(vims.map((v) => v.id)),
  ]);
  const conductor = conductorClient(t, mesh);
  const watch = createVimWatch({ orm: mesh.db.orm, hub: server.hub, logger: testLogger() });
  const onlyRed = (project: string) => project === 'red';

  const before = await maxEventId(mesh);
  await flap(mesh, conductor, vims, 8, 4); // two transitions per VIM
  const storedRed = (
    await mesh.query<{ id: string }>(`select id from vim_event where id > ? and vim_id = any(?::uuid[]) order by id`, [
      before,
      uuidArray(red),
    ])
  ).map((r) => Number(r.id));
  t.is(storedRed.length, 4);

  const abort = new AbortController();
  const got: WatchVimsResponse[] = [];
  const it = watch.watch(WatchVimsRequest.fromPartial({ sendInitial: true, afterEventId: before }), abort.signal, onlyRed);
  // Initial state (red VIMs only), then the replay (red changes only).
  for (let i = 0; i < 2 + 4; i++) got.push((await it.next()).value as WatchVimsResponse);
  t.deepEqual(
    got
      .slice(0, 2)
      .map((m) => m.vimId)
      .sort(),
    [...red].sort(),
  );
  t.true(got.slice(0, 2).every((m) => m.eventId === 0));
  t.deepEqual(
    got.slice(2).map((m) => m.eventId),
    storedRed,
  );

  // Live: of 8 transitions, the 4 of red VIMs.
  const liveFrom = await maxEventId(mesh);
  const pending = (async () => {
    const live: WatchVimsResponse[] = [];
    for (let i = 0; i < 4; i++) live.push((await it.next()).value as WatchVimsResponse);
    return live;
  })();
  await flap(mesh, conductor, vims, 8, 4);
  const live = await pending;
  const liveRed = (
    await mesh.query<{ id: string }>(`select id from vim_event where id > ? and vim_id = any(?::uuid[]) order by id`, [
      liveFrom,
      uuidArray(red),
    ])
  ).map((r) => Number(r.id));
  t.deepEqual(
    live.map((m) => m.eventId).sort((a, b) => a - b),
    liveRed,
  );
  t.true(live.every((m) => red.includes(m.vimId)));

  // vim_ids narrow the replay the same way.
  const one = new AbortController();
  const single = watch.watch(WatchVimsRequest.fromPartial({ vimIds: [red[0]!], afterEventId: before }), one.signal, onlyRed);
  const firstOfOne = [(await single.next()).value, (await single.next()).value] as WatchVimsResponse[];
  t.true(firstOfOne.every((m) => m.vimId === red[0]));
  t.deepEqual(
    firstOfOne.map((m) => m.eventId),
    storedRed.filter((id) => got.find((m) => m.eventId === id)?.vimId === red[0]),
  );
  one.abort();
  t.true((await single.next()).done);

  // Abort while waiting for a change: the generator ends at once, nothing stays subscribed.
  const waiting = it.next();
  await sleep(100);
  const abortedAt = Date.now();
  abort.abort();
  t.true((await waiting).done);
  t.true(Date.now() - abortedAt < 100);
  t.is(server.hub.listenerCount, 0);
});

test('WatchVims: vim_ids are validated at the edge, at most 1,000 of them', async (t) => {
  const mesh = await startMesh(t);
  const server = await startWatchServer(t, mesh);
  const bad = collect(server.client, { vimIds: ['nope'] });
  const err = await bad.ended;
  t.is(err?.code, Status.INVALID_ARGUMENT);
  t.true(err?.details?.startsWith('vim_ids[0]:'), err?.details);
  const many = collect(server.client, { vimIds: Array.from({ length: 1_001 }, () => '123e4567-e89b-12d3-a456-426614174000') });
  const err2 = await many.ended;
  t.is(err2?.code, Status.INVALID_ARGUMENT);
  t.true(err2?.details?.startsWith('vim_ids:'), err2?.details);
  t.is(server.hub.listenerCount, 0);
});

/**
 * A process holding `count` WatchVims streams (send_initial) it does not read
 * (one read(0) each: see openUnread). readAll() reads them to their end and
 * resolves to how many ended with each status.
 */
function startUnreadingClients(t: ExecutionContext, address: string, count: number) {
  const script = `
    import * as grpc from '@grpc/grpc-js';
    const client = new grpc.Client(${JSON.stringify(address)}, grpc.credentials.createInsecure());
    const streams = [];
    for (let i = 0; i < ${count}; i++) {
      // WatchVimsRequest { send_initial: true }, messages left encoded.
      const s = client.makeServerStreamRequest('/vimmon.tacker.v1.VimService/WatchVims', (r) => r, (b) => b, Buffer.from([0x10, 1]));
      s.on('error', () => {});
      s.read(0);
      streams.push(s);
    }
    process.stdin.once('data', async () => {
      const ends = await Promise.all(streams.map((s) => new Promise((resolve) => {
        s.on('data', () => {});
        s.on('error', (e) => resolve(grpc.status[e.code]));
        s.on('end', () => resolve('OK'));
      })));
      const counts = {};
      for (const e of ends) counts[e] = (counts[e] ?? 0) + 1;
      process.stdout.write(JSON.stringify(counts) + String.fromCharCode(10));
      process.exit(0);
    });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd(), stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => child.kill('SIGKILL'));
  return {
    readAll: () =>
      new Promise<Record<string, number>>((resolve) => {
        child.stdout!.once('data', (d: Buffer) => resolve(JSON.parse(d.toString()) as Record<string, number>));
        child.stdin!.write('read\n');
      }),
  };
}

/** The real ORM, counting the rows each read through typedSql returns. */
function countingOrm(orm: Orm, reads: number[]): Orm {
  return {
    em: {
      fork() {
        const em = orm.em.fork();
        const getKysely = em.getKysely.bind(em);
        // A Kysely plugin sees every result on its way back (a Proxy cannot: the EntityManager has private fields).
        em.getKysely = ((options?: Parameters<typeof getKysely>[0]) =>
          getKysely(options).withPlugin({
            transformQuery: (args) => args.node,
            transformResult: async (args) => {
              reads.push(args.result.rows.length);
              return args.result;
            },
          })) as typeof em.getKysely;
        return em;
      },
    },
  } as unknown as Orm;
}
