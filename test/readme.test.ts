// Every ```grpcurl block of README.md is sent, in order, to a running mesh:
// its JSON must parse as the method's request and the call must succeed. So
// the README cannot drift from the contracts.
import { readFileSync } from 'node:fs';
import test from 'ava';
import { createChannel, createClient, type Channel } from 'nice-grpc';
import { HealthDefinition } from '../gen/grpc/health/v1/health.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { ExecutorServiceDefinition } from '../gen/vimmon/executor/v1/executor_service.js';
import { VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { startMesh } from './support/mesh.js';
import { readmeExtraDefinitions, readmeExtraRoles } from './support/readme-roles.js';

interface Snippet {
  json: string;
  port: number;
  method: string;
}

export function grpcurlSnippets(readme: string): Snippet[] {
  const blocks = [...readme.matchAll(/```grpcurl\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return blocks.map((b) => {
    const m = /grpcurl -plaintext -d '([\s\S]*?)' 127\.0\.0\.1:(\d+) ([\w.]+\/\w+)/.exec(b);
    if (!m) throw new Error(`unparsable grpcurl block:\n${b}`);
    return { json: m[1]!, port: Number(m[2]), method: m[3]! };
  });
}

const definitions = [VimServiceDefinition, ExecutorServiceDefinition, VimMonitorAction2ConductorDefinition, HealthDefinition, ...readmeExtraDefinitions];

test('every grpcurl example in README.md runs against the mesh', async (t) => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const snippets = grpcurlSnippets(readme);
  t.true(snippets.length >= 10, `found ${snippets.length} examples`);
  const mesh = await startMesh(t);
  const extra = await readmeExtraRoles(t, mesh);
  const portOf = (address: string) => Number(address.split(':').at(-1));
  const ports = new Map<number, number>([
    [50051, portOf(mesh.servers[0]!.address)],
    [50052, portOf(mesh.conductors[0]!.address)],
    [50053, portOf(mesh.executors[0]!.address)],
    ...extra.ports,
  ]);
  const channels = new Map<number, Channel>();
  t.teardown(() => channels.forEach((c) => c.close()));
  let vimId = '';
  for (const s of snippets) {
    const [service, method] = s.method.split('/') as [string, string];
    const def = definitions.find((d) => d.fullName === service);
    t.truthy(def, `README names a service vimmon serves: ${service}`);
    const entry = Object.entries(def!.methods).find(([, m]) => m.name === method);
    t.truthy(entry, `${service} has ${method}`);
    const [key, md] = entry!;
    const port = ports.get(s.port);
    t.truthy(port, `README uses a known default port: ${s.port}`);
    const json = s.json.replaceAll('VIM_ID', vimId || '00000000-0000-4000-8000-000000000000').replaceAll('127.0.0.1:50051', `127.0.0.1:${ports.get(50051)}`);
    const request = (md.requestType as { fromJSON(o: unknown): unknown }).fromJSON(JSON.parse(json));
    if (!channels.has(port!)) channels.set(port!, createChannel(`127.0.0.1:${port}`));
    const client = createClient(def as never, channels.get(port!)!) as Record<string, (r: unknown, o?: unknown) => unknown>;
    if (md.responseStream) {
      const abort = new AbortController();
      const it = (client[key]!(request, { signal: abort.signal }) as AsyncIterable<unknown>)[Symbol.asyncIterator]();
      const first = await Promise.race([it.next(), new Promise((r) => setTimeout(() => r('quiet'), 300))]);
      t.not((first as { done?: boolean }).done, true, `${s.method} stream did not end at once`);
      abort.abort();
      await it.next().catch(() => {});
    } else {
      const reply = (await client[key]!(request)) as Record<string, unknown>;
      if (s.method.endsWith('/RegisterVim')) {
        vimId = (reply.vim as { id: string }).id;
        t.regex(vimId, /^[0-9a-f-]{36}$/);
      }
      if (s.method.endsWith('VimMonitorAction2Conductor/UpdateVim')) t.is(reply.status, VimStatus.VIM_STATUS_BAD_ACTION);
    }
  }
  t.truthy(vimId, 'the README registers a VIM');

  // The curl examples of the Doctor endpoint, with the answers the README shows.
  const curls = [...readme.matchAll(/^curl -X PUT http:\/\/127\.0\.0\.1:(\d+)(\/\S+)(?: -H '[^']*')? -d '([^']*)'\n# (\{.*\})(?:\s+\((\d+)\))?$/gm)];
  t.true(curls.length >= 2, `found ${curls.length} curl examples`);
  for (const [, port, pathname, body, answer, status] of curls) {
    const r = await fetch(`http://127.0.0.1:${ports.get(Number(port))}${pathname}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body,
    });
    t.is(r.status, Number(status ?? 202), body);
    t.deepEqual(await r.json(), JSON.parse(answer!), body);
  }
});
