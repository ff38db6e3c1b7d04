// The `vimmon` command as a user runs it: the compiled tree on plain node (no
// TypeScript loader), built here by `npm run build` so that the tests exercise
// the current sources. `vimmon all` serves every role with an embedded
// PostgreSQL in its data folder and stops cleanly on SIGTERM; a newcomer's clone
// in a folder user postgres cannot enter still starts (as root).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  rmdirSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { createChannel, createClient, Status } from 'nice-grpc';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../gen/grpc/health/v1/health.js';
import { VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { freePort } from './support/targets.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = path.join(root, 'cli', 'vimmon.js');
const asRoot = process.getuid?.() === 0;

test.before(() => {
  const build = spawnSync('npm', ['run', '-s', 'build'], { cwd: root, encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`npm run build failed (${build.status}):\n${build.stdout}${build.stderr}`);
});

/** Plain node: no --import, no NODE_OPTIONS, no DATABASE_URL or data folder unless given. */
function cliEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of ['NODE_OPTIONS', 'DATABASE_URL', 'VIMMON_DATA_DIR']) delete env[name];
  // Metrics on a port of their own (0): tests run at once, and the default would clash.
  const metrics = Object.fromEntries(
    ['', 'SERVER_', 'CONDUCTOR_', 'EXECUTOR_', 'INSPECTOR_'].map((r) => [`VIMMON_${r}METRICS_ADDR`, '127.0.0.1:0']),
  );
  return { ...env, VIMMON_AMQP_URL: 'off', ...metrics, ...extra };
}

interface Cli {
  child: ChildProcess;
  log(): string;
  exited: Promise<number | null>;
  /** Resolves when the log holds text; fails with the log's end if the process exits or 60 s pass. */
  waitFor(text: string): Promise<void>;
}

function startCli(t: ExecutionContext, args: string[], options: { env: NodeJS.ProcessEnv; cwd?: string }): Cli {
  const child = spawn(process.execPath, [bin, ...args], {
    env: options.env,
    cwd: options.cwd ?? root,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr!.on('data', (d) => (log += d));
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      exitCode = code;
      resolve(code);
    }),
  );
  t.teardown(() => {
    if (exitCode === undefined) child.kill('SIGKILL');
  });
  const waitFor = async (text: string) => {
    const deadline = Date.now() + 60_000;
    while (!log.includes(text) && exitCode === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (!log.includes(text)) throw new Error(`no ${JSON.stringify(text)} in the log (exit ${exitCode}):\n${log.slice(-3000)}`);
  };
  return { child, log: () => log, exited, waitFor };
}

test('vimmon all: serves every role, and SIGTERM stops it cleanly with its embedded PostgreSQL', async (t) => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'vimmon-cli-'));
  chmodSync(dataDir, 0o755);
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  // Ports found free may be taken by another test before vimmon binds them: then new ones, at most three times.
  let ports: number[];
  let cli: Cli;
  for (let attempt = 1; ; attempt++) {
    ports = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
    const [server, conductor, executor, inspector, http] = ports;
    const env = cliEnv({
      VIMMON_DATA_DIR: path.join(dataDir, 'state'),
      VIMMON_SERVER_ADDR: `127.0.0.1:${server}`,
      VIMMON_CONDUCTOR_ADDR: `127.0.0.1:${conductor}`,
      VIMMON_EXECUTOR_ADDR: `127.0.0.1:${executor}`,
      VIMMON_INSPECTOR_ADDR: `127.0.0.1:${inspector}`,
      VIMMON_INSPECTOR_HTTP_ADDR: `127.0.0.1:${http}`,
    });
    cli = startCli(t, ['all'], { env });
    try {
      await cli.waitFor('"vimmon running"');
      break;
    } catch (err) {
      if (attempt < 3 && cli.log().includes('EADDRINUSE')) continue;
      throw err;
    }
  }
  const [server, conductor, executor, inspector] = ports;

  const channels = [server, conductor, executor, inspector].map((p) => createChannel(`127.0.0.1:${p}`));
  t.teardown(() => {
    for (const c of channels) c.close();
  });
  for (const ch of channels) {
    t.is((await createClient(HealthDefinition, ch).check({ service: '' })).status, HealthCheckResponse_ServingStatus.SERVING);
  }
  const pidFile = path.join(dataDir, 'state', 'postgres', 'postmaster.pid');
  t.true(existsSync(pidFile), 'the embedded PostgreSQL runs in the data folder');

  const stream = createClient(VimServiceDefinition, channels[0]!).watchVims({})[Symbol.asyncIterator]();
  const ended = stream.next();
  await new Promise((r) => setTimeout(r, 200));
  cli.child.kill('SIGTERM');
  const err = (await t.throwsAsync(ended)) as unknown as { code: Status };
  t.is(err.code, Status.UNAVAILABLE, 'an open stream ends with UNAVAILABLE');
  t.is(await cli.exited, 0, cli.log().slice(-2000));
  t.true(cli.log().includes('"msg":"stopped"'));
  t.false(existsSync(pidFile), 'PostgreSQL stopped (no postmaster.pid left)');
});

// Serial, so before the others: npm start builds dist/ afresh, which the others run.
test.serial('npm start runs the compiled tree on plain node, and Ctrl-C stops it', async (t) => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'vimmon-cli-start-'));
  chmodSync(dataDir, 0o755);
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const env = cliEnv({ VIMMON_DATA_DIR: dataDir });
  for (const role of ['SERVER', 'CONDUCTOR', 'EXECUTOR', 'INSPECTOR', 'INSPECTOR_HTTP']) env[`VIMMON_${role}_ADDR`] = '127.0.0.1:0';
  // A group of its own, as a terminal's foreground job: Ctrl-C reaches npm and vimmon alike.
  const npm = spawn('npm', ['start'], { cwd: root, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  npm.stdout!.on('data', (d) => (log += d));
  npm.stderr!.on('data', (d) => (log += d));
  let exited = false;
  const exit = new Promise<void>((resolve) => npm.on('exit', () => resolve()));
  npm.on('exit', () => (exited = true));
  t.teardown(() => {
    if (!exited) process.kill(-npm.pid!, 'SIGKILL');
  });
  const deadline = Date.now() + 90_000;
  while (!log.includes('"vimmon running"') && !exited && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.true(log.includes('"vimmon running"'), log.slice(-3000));

  const vimmon = descendants(npm.pid!).find((pid) => commandLine(pid).includes('dist/cli/main.js'));
  t.truthy(vimmon, `a process runs dist/cli/main.js:\n${descendants(npm.pid!).map(commandLine).join('\n')}`);
  t.deepEqual(commandLine(vimmon!), ['node', 'dist/cli/main.js', 'all'], 'plain node: no loader flags');
  t.is(statSync(`/proc/${vimmon}/exe`).ino, statSync(path.join(root, 'node_modules', '.bin', 'node')).ino, "the project's own Node");

  process.kill(-npm.pid!, 'SIGINT');
  await exit;
  t.true(log.includes('"msg":"stopped"'), log.slice(-2000));
  t.false(existsSync(path.join(dataDir, 'postgres', 'postmaster.pid')), 'PostgreSQL stopped');
});

function commandLine(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

function descendants(pid: number): number[] {
  let children: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      children.push(...readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean).map(Number));
    }
  } catch {
    children = [];
  }
  return children.flatMap((c) => [c, ...descendants(c)]);
}

test('the vimmon command runs the compiled tree: usage on --help, exit 2 and usage for an unknown role', (t) => {
  const help = execFileSync(process.execPath, [bin, '--help'], { env: cliEnv({}), encoding: 'utf8' });
  t.regex(help, /^usage: vimmon \[all\|server\|conductor\|executor\|inspector\]/);
  const wrong = spawnSync(process.execPath, [bin, 'conductr'], { env: cliEnv({}), encoding: 'utf8' });
  t.is(wrong.status, 2);
  t.regex(wrong.stderr, /unknown role "conductr"[\s\S]*usage: vimmon/);
});

test('the vimmon command without a build says how to make one', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-cli-nobuild-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(path.join(dir, 'cli'));
  copyFileSync(bin, path.join(dir, 'cli', 'vimmon.js'));
  const r = spawnSync(process.execPath, [path.join(dir, 'cli', 'vimmon.js'), '--help'], { env: cliEnv({}), encoding: 'utf8' });
  t.is(r.status, 1);
  t.is(r.stderr, 'vimmon: dist/ is not built: run `npm run build` in the project folder\n');
});

/** The folder the log says the embedded PostgreSQL's data went to, if it says so. */
function movedTo(log: string): string | undefined {
  return /its data is in (\S+) instead/.exec(log)?.[1];
}

(asRoot ? test : test.skip)(
  'as root, a clone in a folder postgres cannot enter starts with its data in a reachable folder, named in the log',
  async (t) => {
    // mkdtemp makes the folder 0700, as `mktemp -d` does.
    const clone = mkdtempSync(path.join(tmpdir(), 'vimmon-clone-'));
    t.is(statSync(clone).mode & 0o777, 0o700);
    t.teardown(() => rmSync(clone, { recursive: true, force: true }));
    const serverPort = await freePort();
    // Debug, where the embedded PostgreSQL's messages go in this log (cli/main.ts's onLog).
    const env = cliEnv({ VIMMON_SERVER_ADDR: `127.0.0.1:${serverPort}`, VIMMON_LOG_LEVEL: 'debug' });
    const cli = startCli(t, ['server'], { env, cwd: clone });
    let moved: string | undefined;
    t.teardown(() => {
      if (!moved?.includes(path.basename(clone))) return;
      rmSync(moved, { recursive: true, force: true });
      try {
        rmdirSync(path.dirname(moved)); // the shared parent, when nothing else is in it
      } catch {}
    });
    cli.exited.then(() => (moved ??= movedTo(cli.log())));
    await cli.waitFor('"vimmon running"');
    moved = movedTo(cli.log());
    t.truthy(moved, `the log names the folder used:\n${cli.log().slice(-3000)}`);
    t.false(moved!.startsWith(clone + path.sep), 'outside the folder postgres cannot enter');
    t.true(existsSync(path.join(moved!, 'postgres', 'postmaster.pid')), 'the embedded PostgreSQL runs there');
    t.regex(cli.log(), new RegExp(`cannot enter ${clone.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), 'and says why');

    const channel = createChannel(`127.0.0.1:${serverPort}`);
    t.teardown(() => channel.close());
    t.is((await createClient(HealthDefinition, channel).check({ service: '' })).status, HealthCheckResponse_ServingStatus.SERVING);
    const { vim } = await createClient(VimServiceDefinition, channel).registerVim({
      name: 'first-start',
      authUrl: 'http://127.0.0.1:9/identity/v3',
    });
    t.truthy(vim?.id, 'the database takes writes');

    cli.child.kill('SIGTERM');
    t.is(await cli.exited, 0, cli.log().slice(-2000));
    t.false(existsSync(path.join(moved!, 'postgres', 'postmaster.pid')), 'PostgreSQL stopped');
  },
);

(asRoot ? test : test.skip)('as root, a VIMMON_DATA_DIR postgres cannot enter is not moved: vimmon stops and says why', async (t) => {
  const clone = mkdtempSync(path.join(tmpdir(), 'vimmon-clone-'));
  t.teardown(() => rmSync(clone, { recursive: true, force: true }));
  const env = cliEnv({ VIMMON_SERVER_ADDR: `127.0.0.1:${await freePort()}`, VIMMON_DATA_DIR: path.join(clone, 'state') });
  const cli = startCli(t, ['server'], { env, cwd: clone });
  t.is(await cli.exited, 1, cli.log().slice(-2000));
  t.true(cli.log().includes(`which cannot enter ${clone}: set VIMMON_DATA_DIR to a folder it can reach`), cli.log().slice(-2000));
  t.is(movedTo(cli.log()), undefined);
});
