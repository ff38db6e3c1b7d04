import test from 'ava';
import { loadConfig, parseDurationMs } from '../common/config.js';

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
    DATABASE_URL: 'postgres://db/vimmon',
  });
  t.deepEqual(c.executors, ['10.0.0.1:50053', '[fd00::2]:50053']);
  t.is(c.conductorTarget, '10.0.0.11:50052,10.0.0.12:50052');
  t.is(c.reconcileIntervalMs, 500);
  t.is(c.conductorReportsPerStatement, 1);
  t.is(c.databaseUrl, 'postgres://db/vimmon');
});

test('a bad value stops the start with the variable named', (t) => {
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ VIMMON_SERVER_ADDR: 'localhost' }, /^VIMMON_SERVER_ADDR: expected host:port/],
    [{ VIMMON_EXECUTORS: '10.0.0.1' }, /^VIMMON_EXECUTORS: "10.0.0.1" is not host:port/],
    [{ VIMMON_RECONCILE_INTERVAL: '10' }, /^VIMMON_RECONCILE_INTERVAL: expected a duration/],
    [{ VIMMON_CONDUCTOR_REPORTS_PER_STATEMENT: '0' }, /^VIMMON_CONDUCTOR_REPORTS_PER_STATEMENT: expected a whole number from 1 to 1000/],
    [{ VIMMON_LOG_LEVEL: 'loud' }, /^VIMMON_LOG_LEVEL: expected one of/],
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
