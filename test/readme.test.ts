// Every ```grpcurl block of README.md is run, in order, with the real grpcurl
// against a running mesh (reflection tells grpcurl the types, as it would a
// user): the call must succeed. So the README cannot drift from the contracts,
// nor from what grpcurl accepts. CI puts grpcurl on the PATH (.ci/run); elsewhere
// the test looks beside the checkout, then skips saying why.
import { spawn } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { startMesh } from './support/mesh.js';
import { readmeExtraRoles } from './support/readme-roles.js';

interface Snippet {
  command: string;
  port: number;
  method: string;
}

function grpcurlSnippets(readme: string): Snippet[] {
  const blocks = [...readme.matchAll(/```grpcurl\n([\s\S]*?)```/g)].map((m) => m[1]!.trim());
  return blocks.map((b) => {
    const m = /^grpcurl -plaintext -d '[\s\S]*?' 127\.0\.0\.1:(\d+) ([\w.]+\/\w+)$/.exec(b);
    if (!m) throw new Error(`a grpcurl block must be one command, grpcurl -plaintext -d '…' 127.0.0.1:PORT service/Method:\n${b}`);
    return { command: b, port: Number(m[1]), method: m[2]! };
  });
}

/** grpcurl on the PATH, else the build kept beside the checkout (../shared/bin). */
function findGrpcurl(): string | undefined {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [
    ...(process.env.PATH ?? '').split(path.delimiter).map((d) => path.join(d, 'grpcurl')),
    path.resolve(here, '../../shared/bin/grpcurl'),
  ];
  return candidates.find((c) => {
    try {
      accessSync(c, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a README command with bash, as a reader would paste it. A streaming call
 * is ended once it printed its first message, or after quietMs without one
 * (a live-only stream may have nothing to say): either way it did not fail.
 */
function runCommand(grpcurl: string, command: string, stream: boolean, quietMs = 1_500): Promise<Run & { killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', command], {
      env: { ...process.env, PATH: `${path.dirname(grpcurl)}${path.delimiter}${process.env.PATH ?? ''}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let killed = false;
    const stop = () => {
      if (child.exitCode === null && !killed) {
        killed = true;
        child.kill('SIGTERM');
      }
    };
    const quiet = stream ? setTimeout(stop, quietMs) : undefined;
    const limit = setTimeout(stop, 30_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      // grpcurl prints each message as a JSON object ending in a line "}".
      if (stream && /^}\s*$/m.test(stdout)) stop();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(quiet);
      clearTimeout(limit);
      resolve({ code, stdout, stderr, killed });
    });
  });
}

test('every grpcurl example in README.md runs against the mesh, with the real grpcurl', async (t) => {
  const grpcurl = findGrpcurl();
  if (!grpcurl) {
    // CI installs it (.ci/run); a run there without it must fail, not pass by skipping.
    if (process.env.CI) {
      t.fail('grpcurl is not on the PATH (CI puts ../shared/bin there)');
      return;
    }
    t.log('skipped: grpcurl was found neither on the PATH nor in ../shared/bin, so the README examples were not run');
    t.pass();
    return;
  }
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
  let vimId = '';
  const streaming = /\/(WatchVims|WatchActions|SubscribeAlarms)$/;
  for (const s of snippets) {
    const port = ports.get(s.port);
    t.truthy(port, `README uses a known default port: ${s.port}`);
    const command = s.command
      .replaceAll('VIM_ID', vimId || '00000000-0000-4000-8000-000000000000')
      .replaceAll('127.0.0.1:50051/', `127.0.0.1:${ports.get(50051)}/`)
      .replace(new RegExp(`127\\.0\\.0\\.1:${s.port} (${s.method.replaceAll('.', '\\.')})$`), `127.0.0.1:${port} $1`);
    const run = await runCommand(grpcurl, command, streaming.test(s.method));
    if (streaming.test(s.method)) {
      // Ended by the test, not by an error: grpcurl exits on its own only when the call fails.
      t.true(run.killed, `${s.method} stream ended by itself: ${run.stderr || run.stdout}`);
      t.is(run.stderr, '', `${s.method}: ${run.stderr}`);
      continue;
    }
    t.is(run.code, 0, `${s.method} failed (exit ${run.code}): ${run.stderr.trim()}`);
    const reply = JSON.parse(run.stdout || '{}') as Record<string, unknown>;
    if (s.method.endsWith('/RegisterVim')) {
      vimId = (reply.vim as { id: string }).id;
      t.regex(vimId, /^[0-9a-f-]{36}$/);
    }
    if (s.method.endsWith('VimMonitorAction2Conductor/UpdateVim')) t.is(reply.status, 'VIM_STATUS_BAD_ACTION');
    if (s.method.endsWith('VimService/UpdateVim')) {
      // The mask took: both fields it names changed.
      const vim = reply.vim as { description: string; monitor: { interval: string } };
      t.is(vim.description, 'edge site 1, rack 4');
      t.is(vim.monitor.interval, '2s');
    }
  }
  t.truthy(vimId, 'the README registers a VIM');

  // The curl examples of the Doctor endpoint, with the answers the README shows.
  const curls = [
    ...readme.matchAll(
      /^curl -X (PUT|POST) http:\/\/127\.0\.0\.1:(\d+)(\/\S+)(?: -H '[^']*')? -d '([^']*)'\n# (\{.*\})(?:\s+\((\d+)\))?$/gm,
    ),
  ];
  t.true(curls.length >= 3, `found ${curls.length} curl examples`);
  for (const [, method, port, pathname, body, answer, status] of curls) {
    const r = await fetch(`http://127.0.0.1:${ports.get(Number(port))}${pathname}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body,
    });
    t.is(r.status, Number(status ?? 202), body);
    t.deepEqual(await r.json(), JSON.parse(answer!), body);
  }
});
