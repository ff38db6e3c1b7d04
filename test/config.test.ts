import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { loadConfig, parseDurationMs } from '../common/config.js';
import { EnvironmentError, environmentSchema, openStackVariables, parseEnvironment } from '../common/env.js';

test('defaults: the documented addresses and an embedded database', (t) => {
  const c = loadConfig({});
  t.like(c, {
    serverAddr: '127.0.0.1:50051',
    conductorAddr: '127.0.0.1:50052',
    executorAddr: '127.0.0.1:50053',
    inspectorAddr: '127.0.0.1:50054',
    inspectorHttpAddr: '127.0.0.1:12345',
    databaseUrl: undefined,
    dataDir: '.vimmon',
    conductorTarget: '127.0.0.1:50052',
    reconcileIntervalMs: 2_000,
    conductorReportsPerStatement: 256,
    conductorQueuedReports: 2_048,
  });
  t.deepEqual(c.executors, ['127.0.0.1:50053']);
});

test('the environment overrides, lists included', (t) => {
  const c = loadConfig({
    VIMMON_EXECUTOR_ADDR: '0.0.0.0:6000',
    VIMMON_EXECUTORS: '10.0.0.1:50053, [fd00::2]:50053',
    VIMMON_CONDUCTOR_TARGET: '10.0.0.11:50052,10.0.0.12:50052',
    VIMMON_RECONCILE_INTERVAL: '500ms',
    VIMMON_CONDUCTOR_REPORTS_PER_STATEMENT: '1',
    VIMMON_CONDUCTOR_QUEUED_REPORTS: '64',
    DATABASE_URL: 'postgres://db/vimmon',
  });
  t.deepEqual(c.executors, ['10.0.0.1:50053', '[fd00::2]:50053']);
  t.is(c.conductorTarget, '10.0.0.11:50052,10.0.0.12:50052');
  t.is(c.reconcileIntervalMs, 500);
  t.is(c.conductorReportsPerStatement, 1);
  t.is(c.conductorQueuedReports, 64);
  t.is(c.databaseUrl, 'postgres://db/vimmon');
});

test('a bad value stops the start with the variable named', (t) => {
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ VIMMON_SERVER_ADDR: 'localhost' }, /^VIMMON_SERVER_ADDR: expected host:port/],
    [{ VIMMON_EXECUTORS: '10.0.0.1' }, /^VIMMON_EXECUTORS: "10.0.0.1" is not host:port/],
    [{ VIMMON_RECONCILE_INTERVAL: '10' }, /^VIMMON_RECONCILE_INTERVAL: expected a duration/],
    [{ VIMMON_CONDUCTOR_REPORTS_PER_STATEMENT: '0' }, /^VIMMON_CONDUCTOR_REPORTS_PER_STATEMENT: expected a whole number from 1 to 1000/],
    [{ VIMMON_CONDUCTOR_QUEUED_REPORTS: '0' }, /^VIMMON_CONDUCTOR_QUEUED_REPORTS: expected a whole number from 1 to 100000/],
    [{ VIMMON_LOG_LEVEL: 'loud' }, /^VIMMON_LOG_LEVEL: expected one of/],
    // Names every object has are not levels.
    [{ VIMMON_LOG_LEVEL: 'constructor' }, /^VIMMON_LOG_LEVEL: expected one of/],
    [{ VIMMON_LOG_LEVEL: 'toString' }, /^VIMMON_LOG_LEVEL: expected one of/],
    // A list of nothing is not "the default".
    [{ VIMMON_EXECUTORS: ' , ' }, /^VIMMON_EXECUTORS: no address in " , "/],
    [{ VIMMON_SERVER_ADDR: '127.0.0.1:65536' }, /^VIMMON_SERVER_ADDR: port 65536 is not from 0 to 65535/],
    [{ VIMMON_EXECUTORS: '10.0.0.1:50053,10.0.0.2:99999' }, /^VIMMON_EXECUTORS: port 99999 is not from 0 to 65535/],
  ];
  for (const [env, message] of bad) t.throws(() => loadConfig(env), { message }, JSON.stringify(env));
});

test('durations carry their unit', (t) => {
  t.is(parseDurationMs('250ms'), 250);
  t.is(parseDurationMs('10s'), 10_000);
  t.is(parseDurationMs('5m'), 300_000);
  t.is(parseDurationMs('1.5h'), 5_400_000);
  t.is(parseDurationMs('10'), undefined);
  t.is(parseDurationMs('ten seconds'), undefined);
});

test('every bad value is reported at once, one line each naming its variable', (t) => {
  const err = t.throws(
    () =>
      loadConfig({
        VIMMON_SERVER_ADDR: 'localhost',
        VIMMON_INSECURE: 'maybe',
        VIMMON_INSPECTOR_MAX_HOSTS_DOWN: 'lots',
        VIMMON_LOG_LEVEL: 'loud',
        VIMMON_EXECUTOR_ADDR: '127.0.0.1:50053',
      }),
    { instanceOf: EnvironmentError },
  )!;
  const problems = (err as EnvironmentError).problems;
  t.is(problems.length, 4, problems.join('\n'));
  for (const name of ['VIMMON_SERVER_ADDR', 'VIMMON_INSECURE', 'VIMMON_INSPECTOR_MAX_HOSTS_DOWN', 'VIMMON_LOG_LEVEL']) {
    t.true(
      problems.some((p) => p.startsWith(`${name}: `)),
      name,
    );
  }
  t.deepEqual(err.message.split('\n'), [...problems]);
});

test('values a role reads later are checked at start too', (t) => {
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ VIMMON_SECRET_KEY: 'c2hvcnQ=' }, /^VIMMON_SECRET_KEY: expected 32 bytes/],
    [{ VIMMON_AMQP_URL: 'rabbit' }, /^VIMMON_AMQP_URL: expected a amqp:\/\/ or amqps:\/\/ URL or off/],
    [{ DATABASE_URL: 'mysql://db/vimmon' }, /^DATABASE_URL: expected a postgres:\/\/ or postgresql:\/\/ URL, got a "mysql:" URL/],
    [{ OS_AUTH_URL: 'keystone:5000' }, /^OS_AUTH_URL: expected a http:\/\/ or https:\/\/ URL/],
    [{ OS_INTERFACE: 'private' }, /^OS_INTERFACE: expected public, internal or admin, got "private"/],
    [{ VIMMON_TRUST_DOMAIN: 'Vimmon' }, /^VIMMON_TRUST_DOMAIN: expected lower-case letters/],
    [{ VIMMON_AUTH_KEYSTONE_CACHE: '1e3' }, /^VIMMON_AUTH_KEYSTONE_CACHE: expected a whole number/],
  ];
  for (const [env, message] of bad) t.throws(() => parseEnvironment(env), { message }, JSON.stringify(env));
});

test('a URL that may carry credentials is never echoed with them', (t) => {
  const cases: Record<string, string> = {
    DATABASE_URL: 'mysql://vimmon:hunter2@db/vimmon',
    VIMMON_AMQP_URL: 'http://guest:hunter2@mq:5672',
  };
  for (const [name, value] of Object.entries(cases)) {
    const err = t.throws(() => parseEnvironment({ [name]: value }))!;
    t.regex(err.message, new RegExp(`^${name}: `));
    t.false(err.message.includes('hunter2'), err.message);
  }
  const notUrl = t.throws(() => parseEnvironment({ DATABASE_URL: 'vimmon:hunter2@db' }))!;
  t.false(notUrl.message.includes('hunter2'), notUrl.message);
});

test('blank is unset; the OS_* variables are handed on trimmed, only those set', (t) => {
  const e = parseEnvironment({
    VIMMON_LOG_LEVEL: ' ',
    VIMMON_AMQP_URL: '',
    OS_CLOUD: ' lab ',
    OS_PASSWORD: 'p',
    OS_REGION_NAME: '  ',
    PATH: '/bin',
  });
  t.is(e.VIMMON_LOG_LEVEL, 'info');
  t.is(e.VIMMON_AMQP_URL, 'amqp://guest:guest@127.0.0.1:5672');
  t.deepEqual(openStackVariables(e), { OS_CLOUD: 'lab', OS_PASSWORD: 'p' });
  t.is(parseEnvironment({ VIMMON_AMQP_URL: 'off' }).VIMMON_AMQP_URL, undefined);
});

// The roles' own code takes typed values; only common/env.ts may look at the environment.
const sourceDirs = ['common', 'server', 'conductor', 'executor', 'inspector', 'cli', 'db'];
const sources = () =>
  sourceDirs.flatMap((dir) =>
    readdirSync(dir, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts'))
      .map((f) => ({ file: path.join(dir, f), text: readFileSync(path.join(dir, f), 'utf8') })),
  );

test('every variable the source names is declared in the schema, with its meaning', (t) => {
  const declared = environmentSchema.shape as Record<string, { description?: string }>;
  const named = new Set(
    sources().flatMap(({ text }) => text.match(/\b(VIMMON_[A-Z0-9_]*[A-Z0-9]|OS_[A-Z0-9_]*[A-Z0-9]|DATABASE_URL)\b/g) ?? []),
  );
  t.true(named.size > 40, [...named].join(' '));
  for (const name of named) t.true(Object.hasOwn(declared, name), `${name} is not declared in common/env.ts`);
  for (const [name, schema] of Object.entries(declared)) t.truthy(schema.description, `${name} has no meaning`);
});

test('no role reads process.env itself', (t) => {
  // Handing the whole environment on (parseEnvironment(process.env), a child process's env) is not reading it.
  const readers = sources().filter(({ text }) => /process\.env(\.|\[)/.test(text));
  t.deepEqual(
    readers.map((r) => r.file),
    [],
  );
});

test('VIMMON_INSPECTOR_SHARED is on or off, off by default', (t) => {
  t.false(parseEnvironment({}).VIMMON_INSPECTOR_SHARED);
  t.true(parseEnvironment({ VIMMON_INSPECTOR_SHARED: ' ON ' }).VIMMON_INSPECTOR_SHARED);
  t.false(parseEnvironment({ VIMMON_INSPECTOR_SHARED: 'off' }).VIMMON_INSPECTOR_SHARED);
  t.throws(() => parseEnvironment({ VIMMON_INSPECTOR_SHARED: 'yes' }), {
    message: /^VIMMON_INSPECTOR_SHARED: expected on or off, got "yes"/,
  });
});
