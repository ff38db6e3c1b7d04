// Unit tests of the edge parsing shared by the server and the executor:
// auth_url (IPv6 literals included), monitor policy defaults and bounds, and
// credentials sealing.
import test from 'ava';
import { parseAuthUrl } from '../common/auth-url.js';
import { InvalidArgumentError } from '../common/errors.js';
import { monitorDefaults, resolveMonitorPolicy, toMonitorPolicy } from '../common/monitor-policy.js';
import { ProbeKind, type MonitorPolicy } from '../gen/vimmon/tacker/v1/vim_service.js';
import { masked, seal, unseal, validateCredentials } from '../server/credentials.js';
import { decodeSecretKey } from '../common/secret-key.js';
import { msToDuration as ms } from '../common/duration.js';

test('auth_url: hosts, ports by scheme, IPv6 literals', (t) => {
  t.like(parseAuthUrl('https://keystone.example/v3'), { scheme: 'https', host: 'keystone.example', port: 443 });
  t.like(parseAuthUrl('http://192.0.2.10:5000/identity/v3'), { scheme: 'http', host: '192.0.2.10', port: 5000 });
  t.like(parseAuthUrl('https://[fd00::1]:5000/v3'), { host: 'fd00::1', port: 5000, href: 'https://[fd00::1]:5000/v3' });
  t.like(parseAuthUrl('http://[::1]/'), { host: '::1', port: 80 });
  t.like(parseAuthUrl('HTTPS://Keystone.Example:8443'), { scheme: 'https', host: 'keystone.example', port: 8443 });
});

test('auth_url: every rejection names the field and says why', (t) => {
  const cases: Array<[string, RegExp]> = [
    ['', /required/],
    ['keystone:5000/v3', /scheme must be http or https/],
    ['ftp://h/', /scheme must be http or https, not ftp/],
    ['not a url', /white space/],
    ['http://', /not an absolute URL|has no host/],
    ['https://[fd00::1/v3', /not an absolute URL/],
    ['https://admin:secret@h/v3', /must not carry a user name or password/],
    [`https://h/${'a'.repeat(2100)}`, /longer than 2048/],
  ];
  for (const [input, reason] of cases) {
    const err = t.throws(() => parseAuthUrl(input, 'vim.auth_url'), { instanceOf: InvalidArgumentError });
    t.is(err!.field, 'vim.auth_url');
    t.regex(err!.message, reason, input);
    t.true(err!.message.startsWith('vim.auth_url: '));
  }
});

test('monitor policy: defaults, and stale_after follows report_interval', (t) => {
  const d = resolveMonitorPolicy(undefined);
  t.deepEqual(d, {
    probe: 'tcp',
    intervalMs: monitorDefaults.intervalMs,
    timeoutMs: monitorDefaults.timeoutMs,
    count: 1,
    unreachableAfter: 1,
    reportIntervalMs: 30_000,
    staleAfterMs: 90_000,
  });
  const long = resolveMonitorPolicy({ interval: ms(60_000) } as MonitorPolicy);
  t.is(long.reportIntervalMs, 60_000, 'a heartbeat is never due more often than a round');
  t.is(long.staleAfterMs, 180_000);
  const round = resolveMonitorPolicy(toMonitorPolicy(d));
  t.deepEqual(round, d, 'toMonitorPolicy → resolveMonitorPolicy is the identity');
});

test('monitor policy: bounds name the field', (t) => {
  const bad: Array<[Partial<MonitorPolicy>, string]> = [
    [{ interval: ms(50) }, 'monitor.interval'],
    [{ timeout: ms(5) }, 'monitor.timeout'],
    [{ count: 11 }, 'monitor.count'],
    [{ unreachableAfter: 101 }, 'monitor.unreachable_after'],
    [{ interval: ms(1000), timeout: ms(400), count: 3 }, 'monitor.timeout'],
    [{ interval: ms(1000), reportInterval: ms(500) }, 'monitor.report_interval'],
    [{ reportInterval: ms(30_000), staleAfter: ms(30_000) }, 'monitor.stale_after'],
    [{ interval: { seconds: -1, nanos: 0 } }, 'monitor.interval'],
    [{ probe: 42 as ProbeKind }, 'monitor.probe'],
  ];
  for (const [policy, field] of bad) {
    const err = t.throws(() => resolveMonitorPolicy(policy as MonitorPolicy), { instanceOf: InvalidArgumentError });
    t.is(err!.field, field, JSON.stringify(policy));
  }
});

test('monitor policy: an update keeps the fields it does not name', (t) => {
  const stored = resolveMonitorPolicy({ probe: ProbeKind.PROBE_KIND_HTTP, interval: ms(5000), unreachableAfter: 3 } as MonitorPolicy);
  const updated = resolveMonitorPolicy({ interval: ms(2000) } as MonitorPolicy, 'vim.monitor', stored);
  t.is(updated.probe, 'http');
  t.is(updated.unreachableAfter, 3);
  t.is(updated.intervalMs, 2000);
});

test('credentials: validated, sealed to their VIM, masked on the way out', (t) => {
  const key = Buffer.alloc(32, 9);
  const secret = 'correct horse battery staple';
  const c = validateCredentials({
    password: { username: 'u', password: secret, userDomainName: 'Default', projectDomainName: 'Default' },
    token: undefined,
  });
  const sealed = seal(c, key, 'vim-a')!;
  t.false(sealed.includes(secret));
  t.false(Buffer.from(sealed.slice(3), 'base64').includes(secret), 'not in the sealed bytes either');
  t.deepEqual(unseal(sealed, key, 'vim-a'), c);
  t.throws(() => unseal(sealed, key, 'vim-b'), undefined, 'the VIM id is authenticated data');
  t.throws(() => unseal(sealed, Buffer.alloc(32, 1), 'vim-a'), undefined, 'another key does not open it');
  t.is(masked(c)!.password!.password, '***');
  t.is(masked(validateCredentials({ password: undefined, token: { bearerToken: 't0k' } }))!.token!.bearerToken, '***');
  t.is(validateCredentials(undefined).kind, 'none');
  const both = t.throws(() =>
    validateCredentials({
      password: { username: 'u', password: 'p', userDomainName: '', projectDomainName: '' },
      token: { bearerToken: 'x' },
    }),
  );
  t.regex(both!.message, /^credentials: set either/);
  t.throws(() => validateCredentials({ password: undefined, token: { bearerToken: '***' } }), { message: /is the mask/ });
});

test('secret key: base64 or hex of 32 bytes, anything else refused with its source', (t) => {
  t.is(decodeSecretKey(Buffer.alloc(32, 1).toString('base64'), 'X').length, 32);
  t.is(decodeSecretKey('ab'.repeat(32), 'X').length, 32);
  t.throws(() => decodeSecretKey('c2hvcnQ=', 'VIMMON_SECRET_KEY'), { message: /^VIMMON_SECRET_KEY: expected 32 bytes/ });
});
