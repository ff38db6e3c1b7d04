// The people commands as a person runs them: `vimmon …` as a child process on
// plain node, from the tree compiled once for the test file (a third of the CPU
// of running the sources through tsx, and the compiled path is the one that
// ships), with its exit code, stdout and stderr; long-running ones (watches)
// read line by line until stopped. Plus the mesh they run against: the VIM
// monitor mesh of test/support/mesh.ts with an inspector on the same database.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { createChannel, createClient } from 'nice-grpc';
import { InspectorServiceDefinition, type InspectorServiceClient } from '../../gen/vimmon/inspector/v1/inspector_service.js';
import { startInspector } from '../../inspector/main.js';
import { testLogger } from './logger.js';
import { startMesh, type Mesh, type MeshOptions } from './mesh.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
// Inside the project, so that the compiled files find node_modules; not dist/, which test/cli.test.ts rebuilds meanwhile.
const buildDir = path.join(root, 'node_modules', '.cache', `vimmon-cli-test-${process.pid}`);
let built = false;

/** Compiles the shipped tree once for the test file, before its tests, and removes it after. Call at the top of the file. */
export function useCompiledCli(): void {
  test.before(() => {
    // Type errors are the type check's to report (npm test runs it first); what matters here is the emitted JavaScript.
    const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', buildDir], { cwd: root, encoding: 'utf8' });
    if (!existsSync(path.join(buildDir, 'cli', 'main.js')))
      throw new Error(`tsc emitted no cli/main.js (${r.status}):\n${r.stdout}${r.stderr}`);
    // As `npm run build` does: the descriptors are read at run time (reflection, -o json).
    copyFileSync(path.join(root, 'gen', 'descriptor.binpb'), path.join(buildDir, 'gen', 'descriptor.binpb'));
    built = true;
  });
  test.after.always(() => rmSync(buildDir, { recursive: true, force: true }));
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment of a person with no vimmon settings but the ones given. */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of Object.keys(env)) if (name.startsWith('VIMMON_') || name === 'NO_COLOR' || name === 'FORCE_COLOR') delete env[name];
  return { ...env, ...extra };
}

function spawnCli(args: string[], env: NodeJS.ProcessEnv, stdin?: string): ChildProcess {
  if (!built) throw new Error('useCompiledCli() at the top of the test file');
  const child = spawn(process.execPath, [path.join(buildDir, 'cli', 'main.js'), ...args], {
    cwd: root,
    env,
    stdio: [stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (stdin !== undefined) child.stdin!.end(stdin);
  return child;
}

/** Runs `vimmon args…` to its end. */
export function runCli(t: ExecutionContext, args: string[], env: NodeJS.ProcessEnv, stdin?: string): Promise<CliResult> {
  return collectRun(t, spawnCli(args, env, stdin));
}

/** Gathers a child's output until it ends (killed, and failing the test, after 90 s: a busy machine, not a fixed wait). */
function collectRun(t: ExecutionContext, child: ChildProcess): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  t.teardown(() => {
    clearTimeout(timer);
    child.kill('SIGKILL');
  });
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

/**
 * Runs a README line as a person would type it: `npx vimmon …` through bash (so
 * its quoting is bash's), with the compiled command in place of `npx vimmon`.
 */
export function runCliLine(t: ExecutionContext, line: string, env: NodeJS.ProcessEnv, cwd: string): Promise<CliResult> {
  if (!built) throw new Error('useCompiledCli() at the top of the test file');
  if (!line.startsWith('npx vimmon ')) throw new Error(`not a vimmon command: ${line}`);
  const command = `${JSON.stringify(process.execPath)} ${JSON.stringify(path.join(buildDir, 'cli', 'main.js'))} ${line.slice('npx vimmon '.length)}`;
  return collectRun(t, spawn('bash', ['-c', command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] }));
}

export interface RunningCli {
  /** Complete lines written to stdout so far. */
  lines(): string[];
  stderr(): string;
  /** Resolves with the first line that passes; fails naming what it waited for after 60 s or if the process ends. */
  waitForLine(what: string, test: (line: string) => boolean): Promise<string>;
  /** SIGINT (Ctrl-C); resolves with the exit code. */
  interrupt(): Promise<number | null>;
}

export function startCli(t: ExecutionContext, args: string[], env: NodeJS.ProcessEnv): RunningCli {
  const child = spawnCli(args, env);
  let stdout = '';
  let stderr = '';
  let exit: number | null | undefined;
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      exit = code;
      resolve(code);
    }),
  );
  t.teardown(() => {
    if (exit === undefined) child.kill('SIGKILL');
  });
  const lines = () => stdout.split('\n').slice(0, -1);
  return {
    lines,
    stderr: () => stderr,
    async waitForLine(what, test) {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const line = lines().find(test);
        if (line !== undefined) return line;
        if (exit !== undefined || Date.now() > deadline) {
          throw new Error(`no line with ${what} (exit ${exit}):\nstdout:\n${stdout.slice(-2000)}\nstderr:\n${stderr.slice(-2000)}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async interrupt() {
      child.kill('SIGINT');
      return exited;
    },
  };
}

export interface CliMesh {
  mesh: Mesh;
  /** The inspector, for a test to wait on its state without going through the command under test. */
  inspector: InspectorServiceClient;
  /** The environment pointing the CLI at every role of this mesh. */
  env: NodeJS.ProcessEnv;
}

/** A mesh (server, conductor, executor) and an inspector, on port 0, against one test database. */
export async function startCliMesh(t: ExecutionContext, options: MeshOptions = {}): Promise<CliMesh> {
  const mesh = await startMesh(t, options);
  const inspector = await startInspector({
    logger: testLogger(),
    orm: await mesh.db.open(),
    databaseUrl: mesh.db.url,
    address: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    env: {},
    resyncIntervalMs: 60_000,
  });
  t.teardown(() => inspector.stop());
  const channel = createChannel(inspector.address);
  t.teardown(() => channel.close());
  return {
    mesh,
    inspector: createClient(InspectorServiceDefinition, channel),
    env: cliEnv({
      VIMMON_SERVER: mesh.servers[0]!.address,
      VIMMON_CONDUCTOR: mesh.conductors[0]!.address,
      VIMMON_EXECUTOR: mesh.executors.map((e) => e.address).join(','),
      VIMMON_INSPECTOR: inspector.address,
    }),
  };
}
