import { spawnSync } from 'node:child_process';
import test from 'ava';
import { createLogger, parseLogLevel, type LogLevel } from '../common/logger.js';

type Line = Record<string, unknown>;

function capture(level: LogLevel = 'debug') {
  const lines: Line[] = [];
  const raw: string[] = [];
  const logger = createLogger({
    level,
    write: (line) => {
      raw.push(line);
      lines.push(JSON.parse(line) as Line);
    },
  });
  return { logger, lines, raw };
}

test('one JSON line per call: ISO time, the level by name, msg and the fields', (t) => {
  const { logger, lines, raw } = capture();
  logger.debug('d');
  logger.info('i', { vimId: 'v1', count: 2 });
  logger.warn('w');
  logger.error('e');
  t.deepEqual(
    lines.map((l) => l.level),
    ['debug', 'info', 'warn', 'error'],
  );
  t.deepEqual(
    lines.map((l) => l.msg),
    ['d', 'i', 'w', 'e'],
  );
  t.like(lines[1], { vimId: 'v1', count: 2 });
  for (const l of lines) t.is(new Date(l.time as string).toISOString(), l.time as string);
  t.false(
    raw.some((r) => r.includes('\n')),
    'one line each',
  );
  t.false('pid' in lines[0]! || 'hostname' in lines[0]!, 'nothing but what was logged');
});

test('the level is a threshold; silent writes nothing', (t) => {
  const warn = capture('warn');
  warn.logger.debug('no');
  warn.logger.info('no');
  warn.logger.warn('yes');
  warn.logger.error('yes');
  t.deepEqual(
    warn.lines.map((l) => l.level),
    ['warn', 'error'],
  );
  const silent = capture('silent');
  silent.logger.error('no', { err: new Error('x') });
  t.deepEqual(silent.lines, []);
});

test('an error is written with its cause chain, in any field', (t) => {
  const { logger, lines } = capture();
  const root = new Error('ECONNREFUSED 127.0.0.1:5432');
  const mid = new TypeError('pool cannot connect', { cause: root });
  logger.error('database down', {
    err: new Error('health check failed', { cause: mid }),
    reason: new RangeError('why not', { cause: 'a plain string' }),
  });
  const err = lines[0]!.err as Line;
  t.like(err, { name: 'Error', message: 'health check failed' });
  t.regex(err.stack as string, /health check failed/);
  t.like(err.cause, { name: 'TypeError', message: 'pool cannot connect' });
  t.like((err.cause as Line).cause, { name: 'Error', message: 'ECONNREFUSED 127.0.0.1:5432' });
  t.regex(((err.cause as Line).cause as Line).stack as string, /ECONNREFUSED/);
  t.like(lines[0]!.reason, { name: 'RangeError', message: 'why not', cause: 'a plain string' });
});

test('a cause chain that loops ends instead of hanging', (t) => {
  const { logger, lines } = capture();
  const a = new Error('a');
  const b = new Error('b', { cause: a });
  (a as { cause?: unknown }).cause = b;
  logger.error('loop', { err: a });
  t.like(lines[0]!.err, { message: 'a', cause: { message: 'b' } });
});

test('credentials are redacted at the top level and one or two levels down', (t) => {
  const { logger, lines, raw } = capture();
  const err = Object.assign(new Error('keystone refused'), { password: 'hunter2', headers: { 'x-auth-token': 'gAAAAtoken' } });
  logger.info('vim registered', {
    password: 'hunter2',
    vim: { authUrl: 'https://keystone:5000/v3', credentials: { username: 'admin', password: 'hunter2' } },
    request: { headers: { authorization: 'Bearer s3cret', 'X-Auth-Token': 'gAAAAtoken' } },
    env: { OS_PASSWORD: 'hunter2', OS_USERNAME: 'admin' },
    auth: { application_credential_secret: 'hunter2' },
    err,
  });
  for (const secret of ['hunter2', 's3cret', 'gAAAAtoken']) t.false(raw[0]!.includes(secret), `${secret} in ${raw[0]}`);
  t.like(lines[0], { vim: { authUrl: 'https://keystone:5000/v3' }, env: { OS_USERNAME: 'admin' } });
  t.is(lines[0]!.password, '[Redacted]');
  t.is((lines[0]!.err as Line).message, 'keystone refused');
});

test('redaction ignores case, looks into arrays, and copies rather than changes what was logged', (t) => {
  const { logger, lines, raw } = capture();
  const vims = [{ id: 'v1', Password: 'hunter2' }];
  const key = Buffer.from('not a secret by name');
  logger.info('vims', { vims, SERVICETOKEN: 'abc', key });
  t.false(raw[0]!.includes('hunter2'), raw[0]);
  t.like(lines[0], { vims: [{ id: 'v1', Password: '[Redacted]' }], SERVICETOKEN: '[Redacted]', key: { type: 'Buffer' } });
  t.is(vims[0]!.Password, 'hunter2', "the caller's object is left alone");
});

test('a child carries its fields into every line, its own redacted too', (t) => {
  const { logger, lines } = capture();
  const server = logger.child({ role: 'server', token: 'abc' });
  const vim = server.child({ vimId: 'v1' });
  vim.info('probe', { attempt: 1 });
  server.warn('slow');
  logger.info('root');
  t.like(lines[0], { role: 'server', vimId: 'v1', attempt: 1, msg: 'probe', token: '[Redacted]' });
  t.like(lines[1], { role: 'server', msg: 'slow' });
  t.false('vimId' in lines[1]!);
  t.false('role' in lines[2]!);
});

test('without write, lines go to stderr synchronously: none is lost at exit', (t) => {
  const script = [
    "import { createLogger } from './common/logger.ts';",
    "const log = createLogger({ level: 'info' });",
    "for (let i = 0; i < 2000; i++) log.info('line', { i, pad: 'x'.repeat(200) });",
    'process.exit(0);',
  ].join('\n');
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr.slice(-500));
  const lines = r.stderr
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Line);
  t.is(lines.length, 2000);
  t.is(lines.at(-1)!.i, 1999);
  t.is(r.stdout, '');
});

test('log levels: the names, any case; others refused naming VIMMON_LOG_LEVEL', (t) => {
  t.is(parseLogLevel(undefined), 'info');
  t.is(parseLogLevel('DEBUG'), 'debug');
  t.is(parseLogLevel('silent'), 'silent');
  for (const bad of ['trace', 'fatal', '__proto__', 'hasOwnProperty', '']) {
    t.throws(() => parseLogLevel(bad), { message: /^VIMMON_LOG_LEVEL: expected one of debug, info, warn, error, silent/ }, bad);
  }
});
