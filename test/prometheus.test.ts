// deploy/prometheus as operators use it: promtool checks the scrape config and
// the alert rules and runs their unit tests (and each rule, broken on purpose,
// makes those tests fail); then a real Prometheus (Debian's `prometheus`)
// scrapes a running `vimmon all` every second with the shipped rules loaded,
// and its HTTP API must show the VIMs by status and VimmonVimUnreachable firing
// once a VIM's target closes.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, constants, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { createChannel, createClient } from 'nice-grpc';
import { parse, stringify } from 'yaml';
import { msToDuration as ms } from '../common/duration.js';
import { VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { createTestDatabase } from './support/database.js';
import { freePort, openTcpTarget } from './support/targets.js';
import { eventually } from './support/wait.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const deployDir = path.join(root, 'deploy', 'prometheus');
const rulesFile = path.join(deployDir, 'rules', 'vimmon-alerts.yml');
const run = promisify(execFile);

/** A binary on PATH or in /usr/bin, or undefined when it is not installed. */
function findBinary(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter), '/usr/bin', '/usr/local/bin']) {
    if (!dir) continue;
    try {
      accessSync(path.join(dir, name), constants.X_OK);
      return path.join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

const promtool = findBinary('promtool');
const prometheus = findBinary('prometheus');
// Where Prometheus is absent and this is not CI, say so and skip; in CI the tests run and fail with the reason.
const missing = 'is not installed (Debian: apt-get install -y prometheus); CI installs it, so this test fails there instead of skipping';
const promtoolTest = promtool || process.env.CI ? test : test.skip;
const prometheusTest = prometheus || process.env.CI ? test : test.skip;
if (!promtool && !process.env.CI) console.warn(`prometheus: promtool tests skipped — promtool ${missing}`);
if (!prometheus && !process.env.CI) console.warn(`prometheus: the live scrape test skipped — prometheus ${missing}`);

interface Rule {
  alert: string;
  expr: string;
  for?: string;
}
interface RuleFile {
  groups: Array<{ name: string; rules: Rule[] }>;
}

const readRules = (): RuleFile => parse(readFileSync(rulesFile, 'utf8')) as RuleFile;

/** promtool's exit code and output; never throws for a non-zero exit. */
async function promtoolRun(args: string[], cwd = root): Promise<{ code: number; output: string }> {
  if (!promtool) throw new Error(`promtool ${missing}`);
  try {
    const { stdout, stderr } = await run(promtool, args, { cwd });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

promtoolTest('promtool: the scrape config and the rules are valid, and every rule unit test passes', async (t) => {
  const rules = await promtoolRun(['check', 'rules', rulesFile]);
  t.is(rules.code, 0, rules.output);
  t.regex(rules.output, /SUCCESS: 8 rules found/);
  const config = await promtoolRun(['check', 'config', path.join(deployDir, 'prometheus.yml')]);
  t.is(config.code, 0, config.output);
  const tests = readdirSync(path.join(deployDir, 'tests')).filter((f) => f.endsWith('.yml'));
  t.true(tests.length > 0);
  const unit = await promtoolRun(['test', 'rules', ...tests.map((f) => path.join(deployDir, 'tests', f))]);
  t.is(unit.code, 0, unit.output);
  t.notRegex(unit.output, /FAILED/);
  t.deepEqual(
    readRules().groups.flatMap((g) => g.rules.map((r) => r.alert)),
    [
      'VimmonVimUnreachable',
      'VimmonNoLiveExecutor',
      'VimmonFencedReportsHigh',
      'VimmonConductorShedding',
      'VimmonNovaCallsFailing',
      'VimmonVmCacheStale',
      'VimmonAlarmSubscriberCutOff',
      'VimmonTargetDown',
    ],
  );
});

promtoolTest('promtool: each rule has a firing case and a quiet case (a rule that never or always fires fails its tests)', async (t) => {
  const alerts = readRules().groups.flatMap((g) => g.rules.map((r) => r.alert));
  // A copy of deploy/prometheus, whose rule file is rewritten per case; the tests find it at ../rules.
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-promtool-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(deployDir, dir, { recursive: true });
  const tests = readdirSync(path.join(dir, 'tests')).map((f) => path.join(dir, 'tests', f));
  for (const alert of alerts) {
    for (const [broken, expr] of [
      ['never fires', 'vector(1) > 2'],
      ['always fires', 'vector(1)'],
    ] as const) {
      const rules = readRules();
      for (const rule of rules.groups.flatMap((g) => g.rules)) if (rule.alert === alert) rule.expr = expr;
      writeFileSync(path.join(dir, 'rules', 'vimmon-alerts.yml'), stringify(rules));
      const r = await promtoolRun(['test', 'rules', ...tests]);
      t.not(r.code, 0, `${alert} that ${broken}: the unit tests still pass`);
      t.regex(r.output, new RegExp(`alertname: ${alert}\\b`), `${alert} that ${broken}: its own test must be the one failing`);
    }
  }
});

/** The rule file with every `for:` cut to a few seconds: Prometheus counts it in wall time, and a test cannot wait 5 minutes. */
function rulesWithShortFor(seconds: number): string {
  const rules = readRules();
  for (const rule of rules.groups.flatMap((g) => g.rules)) if (rule.for) rule.for = `${seconds}s`;
  return stringify(rules);
}

interface Process {
  child: ChildProcess;
  log(): string;
  /** Resolves when the log holds text; throws with the log's end if the process exits or timeoutMs pass. */
  waitFor(text: string, timeoutMs: number): Promise<void>;
}

/** A child process that teardown stops (SIGTERM, then SIGKILL after 15 s) before the resources registered earlier are released. */
function startProcess(t: ExecutionContext, name: string, command: string, args: string[], env: NodeJS.ProcessEnv): Process {
  const child = spawn(command, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.on('exit', () => {
      exited = true;
      resolve();
    }),
  );
  t.teardown(async () => {
    if (exited) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exit;
    clearTimeout(timer);
  });
  return {
    child,
    log: () => log,
    async waitFor(text, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!log.includes(text) && !exited && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      if (!log.includes(text))
        throw new Error(`${name}: no ${JSON.stringify(text)} in its output (exited: ${exited}):\n${log.slice(-3000)}`);
    },
  };
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}
interface PrometheusAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
}

async function prometheusApi<T>(base: string, pathAndQuery: string): Promise<T> {
  const res = await fetch(`${base}${pathAndQuery}`, { signal: AbortSignal.timeout(10_000) });
  const body = (await res.json()) as { status: string; data: T; error?: string };
  if (body.status !== 'success') throw new Error(`${pathAndQuery}: ${body.error ?? res.status}`);
  return body.data;
}

prometheusTest('a real Prometheus scrapes vimmon all: vimmon_vims counts the VIMs by status, and VimmonVimUnreachable fires', async (t) => {
  t.timeout(240_000);
  if (!prometheus) throw new Error(`prometheus ${missing}`);
  const db = await createTestDatabase(t);
  const work = mkdtempSync(path.join(tmpdir(), 'vimmon-prometheus-'));
  chmodSync(work, 0o755);
  t.teardown(() => rmSync(work, { recursive: true, force: true }));

  // The mesh: every role in one process, from the sources (no build), on free ports.
  const [server, conductor, executor, inspector, http, metrics] = await Promise.all(Array.from({ length: 6 }, () => freePort()));
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('VIMMON_') && k !== 'NODE_OPTIONS' && !k.startsWith('OS_')),
  );
  const mesh = startProcess(t, 'vimmon all', process.execPath, ['--import=tsx', path.join(root, 'cli', 'main.ts'), 'all'], {
    ...env,
    DATABASE_URL: db.url,
    VIMMON_DATA_DIR: path.join(work, 'data'),
    VIMMON_AMQP_URL: 'off',
    VIMMON_SERVER_ADDR: `127.0.0.1:${server}`,
    VIMMON_CONDUCTOR_ADDR: `127.0.0.1:${conductor}`,
    VIMMON_EXECUTOR_ADDR: `127.0.0.1:${executor}`,
    VIMMON_INSPECTOR_ADDR: `127.0.0.1:${inspector}`,
    VIMMON_INSPECTOR_HTTP_ADDR: `127.0.0.1:${http}`,
    VIMMON_METRICS_ADDR: `127.0.0.1:${metrics}`,
  });
  await mesh.waitFor('"vimmon running"', 60_000);

  // Prometheus: the shipped rules (for: cut short), one job scraping the mesh every second.
  const promPort = await freePort();
  const rulesCopy = path.join(work, 'vimmon-alerts.yml');
  writeFileSync(rulesCopy, rulesWithShortFor(2));
  const configFile = path.join(work, 'prometheus.yml');
  writeFileSync(
    configFile,
    stringify({
      global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
      rule_files: [rulesCopy],
      scrape_configs: [{ job_name: 'vimmon-all', static_configs: [{ targets: [`127.0.0.1:${metrics}`] }] }],
    }),
  );
  const base = `http://127.0.0.1:${promPort}`;
  const prom = startProcess(
    t,
    'prometheus',
    prometheus,
    [`--config.file=${configFile}`, `--storage.tsdb.path=${path.join(work, 'tsdb')}`, `--web.listen-address=127.0.0.1:${promPort}`],
    env,
  );
  await eventually(
    async () => (await fetch(`${base}/-/ready`, { signal: AbortSignal.timeout(2_000) })).ok,
    60_000,
    `Prometheus ready:\n${prom.log().slice(-2000)}`,
    200,
  );

  const query = (q: string) => prometheusApi<{ result: Sample[] }>(base, `/api/v1/query?query=${encodeURIComponent(q)}`);
  const vimsByStatus = async () =>
    Object.fromEntries((await query('vimmon_vims{job="vimmon-all"}')).result.map((s) => [s.metric.status, Number(s.value[1])]));
  const unreachableAlerts = async () =>
    (await prometheusApi<{ alerts: PrometheusAlert[] }>(base, '/api/v1/alerts')).alerts.filter(
      (a) => a.labels.alertname === 'VimmonVimUnreachable',
    );

  await eventually(async () => (await query('up{job="vimmon-all"} == 1')).result.length === 1, 60_000, 'the mesh scraped (up == 1)', 250);

  // Three VIMs on three real TCP listeners, probed every 500 ms; a refused connection fails at once.
  const targets = await Promise.all([openTcpTarget(), openTcpTarget(), openTcpTarget()]);
  t.teardown(async () => {
    for (const target of targets) await target.close();
  });
  const channel = createChannel(`127.0.0.1:${server}`);
  t.teardown(() => channel.close());
  const vims = createClient(VimServiceDefinition, channel);
  const policy = { interval: ms(500), timeout: ms(400), unreachableAfter: 2, reportInterval: ms(2_000), staleAfter: ms(10_000) };
  const registered = [];
  for (const [i, target] of targets.entries()) {
    registered.push((await vims.registerVim({ name: `prom-${i}`, authUrl: target.url, monitor: policy })).vim!);
  }

  const allReachable = await eventually(
    async () => {
      const counts = await vimsByStatus();
      return counts.reachable === 3 ? counts : undefined;
    },
    60_000,
    'vimmon_vims{status="reachable"} == 3',
    250,
  );
  t.deepEqual(allReachable, { pending: 0, reachable: 3, unreachable: 0 }, 'every status is present, 0 when none');
  const registrations = await query(
    'sum(grpc_server_handled_total{grpc_service="vimmon.tacker.v1.VimService", grpc_method="RegisterVim", grpc_code="OK"})',
  );
  t.is(Number(registrations.result[0]?.value[1]), 3, 'the three RegisterVim calls, counted as go-grpc-prometheus names them');
  t.deepEqual(await unreachableAlerts(), [], 'no VIM is unreachable yet');

  // One VIM's target closes: it turns UNREACHABLE, and its alert (and only its) fires.
  const victim = registered[1]!;
  await targets[1]!.close();
  const afterClose = await eventually(
    async () => {
      const counts = await vimsByStatus();
      return counts.unreachable === 1 ? counts : undefined;
    },
    60_000,
    'vimmon_vims{status="unreachable"} == 1',
    250,
  );
  t.deepEqual(afterClose, { pending: 0, reachable: 2, unreachable: 1 });
  const firing = await eventually(
    async () => (await unreachableAlerts()).find((a) => a.state === 'firing'),
    60_000,
    'VimmonVimUnreachable firing',
    250,
  );
  t.like(firing.labels, { alertname: 'VimmonVimUnreachable', severity: 'critical', vim_id: victim.id, vim_name: 'prom-1' });
  t.is(firing.annotations.summary, 'VIM prom-1 has been UNREACHABLE for 5 minutes');
  t.deepEqual(
    (await unreachableAlerts()).map((a) => a.labels.vim_id),
    [victim.id],
    'the reachable VIMs have no alert',
  );
});
