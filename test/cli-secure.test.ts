// A secured deployment as an operator sets it up: deploy/make-certs.sh makes a
// CA and a certificate per role, `vimmon token new` makes a static token, and
// `vimmon all` serves with VIMMON_TLS_DIR and VIMMON_AUTH_TOKENS_FILE. Calls
// without a credential are refused; with the token, a VIM is registered and
// monitored (the roles reach each other with their own certificates). And a
// role asked to listen beyond loopback without TLS and authentication refuses
// to start, naming the variable.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { ChannelCredentials, type ClientError, createChannel, createClient, Metadata, Status } from 'nice-grpc';
import { msToDuration } from '../common/duration.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { makeCertsScript } from './support/certificates.js';
import { createScratchDatabase } from './support/scratch-database.js';
import { freePort, openTcpTarget } from './support/targets.js';
import { eventually } from './support/wait.js';

/** DATABASE_URL pointed at a scratch database when a server is given (CI), else unset: an embedded one. */
async function databaseEnv(t: ExecutionContext, dataDir: string): Promise<NodeJS.ProcessEnv> {
  const env: NodeJS.ProcessEnv = { ...process.env, VIMMON_DATA_DIR: dataDir };
  if (!process.env.DATABASE_URL) {
    delete env.DATABASE_URL;
    return env;
  }
  const scratch = await createScratchDatabase(process.env.DATABASE_URL, 'vimmon_cli');
  t.teardown(() => scratch.drop());
  return { ...env, DATABASE_URL: scratch.url };
}

const grpcurlDir = fileURLToPath(new URL('../../shared/bin', import.meta.url));

const cli = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
  spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });

test('vimmon all with certificates and a tokens file: strangers refused, the token holder served, roles talk over mutual TLS', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-secure-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('bash', [makeCertsScript, path.join(dir, 'tls')], { stdio: 'pipe' });
  const made = execFileSync(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'token', 'new', 'ops', '--roles', 'admin'], {
    encoding: 'utf8',
  });
  const [token, ...entry] = made.split('\n');
  t.regex(token!, /^vmt_/);
  writeFileSync(path.join(dir, 'tokens.yaml'), entry.join('\n'));
  t.false(entry.join('\n').includes(token!), 'the file holds the hash, never the token');

  const [server, conductor, executor, inspector, http] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  chmodSync(dir, 0o755);
  const env: NodeJS.ProcessEnv = {
    ...(await databaseEnv(t, path.join(dir, 'state'))),
    VIMMON_SERVER_ADDR: `127.0.0.1:${server}`,
    VIMMON_CONDUCTOR_ADDR: `127.0.0.1:${conductor}`,
    VIMMON_EXECUTOR_ADDR: `127.0.0.1:${executor}`,
    VIMMON_INSPECTOR_ADDR: `127.0.0.1:${inspector}`,
    VIMMON_INSPECTOR_HTTP_ADDR: `127.0.0.1:${http}`,
    VIMMON_AMQP_URL: 'off',
    VIMMON_METRICS_ADDR: 'off',
    VIMMON_TLS_DIR: path.join(dir, 'tls'),
    VIMMON_AUTH_TOKENS_FILE: path.join(dir, 'tokens.yaml'),
  };
  const child = cli(['all'], env);
  let log = '';
  child.stderr!.on('data', (d) => (log += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => child.kill('SIGKILL'));
  await eventually(async () => log.includes('"vimmon running"'), 60_000, 'vimmon running').catch(() => t.fail(log.slice(-3000)));
  t.true(log.includes('"authentication on"'));
  t.false(log.includes('development mode'));

  const ca = execFileSync('cat', [path.join(dir, 'tls', 'ca.pem')]);
  const channel = createChannel(`127.0.0.1:${server}`, ChannelCredentials.createSsl(ca));
  t.teardown(() => channel.close());
  const stranger = createClient(VimServiceDefinition, channel);
  const refused = (await t.throwsAsync(stranger.listVims({}))) as ClientError;
  t.is(refused.code, Status.UNAUTHENTICATED);
  const ops = createClient(VimServiceDefinition, channel, { '*': { metadata: Metadata({ authorization: `Bearer ${token}` }) } });
  const target = await openTcpTarget();
  t.teardown(() => target.close());
  const { vim } = await ops.registerVim({
    name: 'secured',
    authUrl: target.url,
    monitor: { interval: msToDuration(500), timeout: msToDuration(200) },
  });
  // REACHABLE: the server started the action on the executor, which reported through the conductor.
  await eventually(async () => (await ops.getVim({ id: vim!.id })).vim!.status === VimStatus.VIM_STATUS_REACHABLE, 15_000, 'REACHABLE');
  const audit = await ops.listVimAudit({ vimId: vim!.id });
  t.is(audit.records[0]!.principal, 'token:ops');

  // README's "Calling a secured mesh" examples, with the real grpcurl and curl.
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const blocks = [...readme.matchAll(/```sh (secure|secure-refused)\n([\s\S]*?)```/g)];
  t.true(blocks.length >= 4, `found ${blocks.length} secured examples`);
  const ports: Record<string, number> = { '50051': server, '50052': conductor, '50053': executor, '50054': inspector, '12345': http };
  for (const [, kind, body] of blocks) {
    const command = body!
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .join('\n')
      .replaceAll('/etc/vimmon/tls', path.join(dir, 'tls'))
      .replace(/127\.0\.0\.1:(\d+)/g, (_, p: string) => `127.0.0.1:${ports[p] ?? p}`);
    const shown = body!
      .split('\n')
      .filter((l) => l.startsWith('# '))
      .map((l) => l.slice(2).trim());
    const r = spawnSync('bash', ['-c', command], {
      encoding: 'utf8',
      env: { ...process.env, VIMMON_TOKEN: token!, PATH: `${grpcurlDir}:${process.env.PATH}` },
      timeout: 20_000,
    });
    if (kind === 'secure') t.is(r.status, 0, `${command}\n${r.stdout}${r.stderr}`);
    else {
      t.not(r.status, 0, command);
      for (const line of shown) t.true(`${r.stdout}${r.stderr}`.includes(line), `${command} shows ${line}:\n${r.stderr}`);
    }
  }

  child.kill('SIGTERM');
  t.is(await exited, 0, log.slice(-2000));
});

test('beyond loopback without TLS and authentication: refuses to start (exit 2) naming the variable; VIMMON_INSECURE lets it, with a warning', async (t) => {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-insecure-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const env = { ...(await databaseEnv(t, dir)), VIMMON_CONDUCTOR_ADDR: `0.0.0.0:${port}`, VIMMON_CONDUCTOR_METRICS_ADDR: 'off' };
  const refused = cli(['conductor'], env);
  let err = '';
  refused.stderr!.on('data', (d) => (err += d));
  const code = await new Promise<number | null>((resolve) => refused.on('exit', resolve));
  t.is(code, 2);
  t.regex(err, /VIMMON_CONDUCTOR_ADDR=0\.0\.0\.0:\d+ is not a loopback address/);
  t.regex(err, /VIMMON_INSECURE=true/);

  const insecure = cli(['conductor'], { ...env, VIMMON_INSECURE: 'true' });
  let log = '';
  insecure.stderr!.on('data', (d) => (log += d));
  const exited = new Promise<number | null>((resolve) => insecure.on('exit', resolve));
  t.teardown(() => insecure.kill('SIGKILL'));
  await eventually(async () => log.includes('"vimmon running"'), 60_000, 'started').catch(() => t.fail(log.slice(-2000)));
  t.regex(log, /VIMMON_INSECURE=true: serving beyond loopback/);
  insecure.kill('SIGTERM');
  t.is(await exited, 0);
});
