// Probe targets an attacker cannot abuse: auth_url text that hides what it
// names is refused, the Tacker server refuses an address of the deny list, and
// the executor checks the address it actually connects to, after DNS.
import net, { type AddressInfo } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { createChannel, createClient, Status } from 'nice-grpc';
import { createAddressDenyList, parseAddressDenyList } from '../common/address-deny.js';
import { parseAuthUrl } from '../common/auth-url.js';
import { loadConfig } from '../common/config.js';
import { InvalidArgumentError } from '../common/errors.js';
import { startConductor } from '../conductor/main.js';
import { startExecutor } from '../executor/main.js';
import { createProbes, probeRound, probes as defaultProbes } from '../executor/probe.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { ProbeKind, VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { startServer } from '../server/main.js';
import { createTestDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';
import { startMesh } from './support/mesh.js';
import { eventually } from './support/wait.js';

const never = new AbortController().signal;
const loopbackDenied = createAddressDenyList(['127.0.0.0/8', '::1/128']);

/** A TCP listener on 127.0.0.1 that counts the connections it accepts. */
async function countingListener(t: ExecutionContext): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    accepted++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.end('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as AddressInfo).port, accepted: () => accepted };
}

function refused(t: ExecutionContext, text: string, reason: RegExp) {
  const err = t.throws(() => parseAuthUrl(text), { instanceOf: InvalidArgumentError }, text);
  t.true(err!.message.startsWith('auth_url: '), err!.message);
  t.regex(err!.message, reason, text);
  return err!.message;
}

test('auth_url: port 0, an empty authority and numeric host forms are refused', (t) => {
  refused(t, 'http://keystone.example:0/v3', /port 0/);
  refused(t, 'https://[fd00::1]:00/v3', /port 0/);
  refused(t, 'https:///nohost', /has no host/);
  refused(t, 'http:/x', /has no host/);
  refused(t, 'http:\\\\x/', /has no host/);
  for (const hidden of [
    'http://0x7f.1/',
    'http://2130706433/',
    'http://127.1/',
    'http://0177.0.0.1/',
    'http://127.0.0.1./',
    'http://%31%32%37.0.0.1/',
  ]) {
    refused(t, hidden, /is a numeric form of 127\.0\.0\.1: write 127\.0\.0\.1/);
  }
  // What stays accepted.
  t.like(parseAuthUrl('http://127.0.0.1:5000/v3'), { host: '127.0.0.1', port: 5000 });
  t.like(parseAuthUrl('HTTP://127.0.0.1'), { host: '127.0.0.1', port: 80 });
  t.like(parseAuthUrl('https://[fd00::1]:5000/v3'), { host: 'fd00::1' });
  t.like(parseAuthUrl('https://keystone.example/v3'), { host: 'keystone.example', port: 443 });
  t.like(parseAuthUrl('http://192.0.2.10:65535/'), { port: 65535 });
});

test('auth_url: an error echoing a malformed URL masks its password and stays under 200 characters', (t) => {
  const message = refused(t, 'http://admin:s3cret-pw@[fd00::1/v3', /is not an absolute URL/);
  t.false(message.includes('s3cret-pw'), message);
  t.true(message.includes('http://admin:***@'), message);
  const slashed = refused(t, 'http://admin:s3c/ret@keystone:x/', /is not an absolute URL/);
  t.false(slashed.includes('s3c') || slashed.includes('ret@'), slashed);
  const long = refused(t, `http://admin:pw@${'a'.repeat(500)}:x/`, /is not an absolute URL/);
  t.false(long.includes(':pw@'));
  t.true(long.length < 260, `${long.length} characters`);
  const scheme = refused(t, `${'x'.repeat(500)}://h/`, /scheme must be http or https/);
  t.true(scheme.length < 260, `${scheme.length} characters`);
  t.regex(refused(t, 'ftp://h/', /scheme/), /not ftp$/);
});

test('auth_url: a literal address of the deny list is refused, IPv4-mapped IPv6 included', (t) => {
  const deny = parseAddressDenyList(undefined);
  t.deepEqual(deny.ranges, ['169.254.0.0/16']);
  for (const text of [
    'http://169.254.169.254/',
    'http://169.254.1.1:8080/latest',
    'http://[::ffff:169.254.169.254]/',
    'http://[0:0:0:0:0:ffff:a9fe:a9fe]/',
  ]) {
    const err = t.throws(() => parseAuthUrl(text, 'auth_url', { deny }), { instanceOf: InvalidArgumentError }, text);
    t.regex(err!.message, /^auth_url: .* is in a denied range \(169\.254\.0\.0\/16, VIMMON_PROBE_DENY\)$/, text);
  }
  t.like(parseAuthUrl('http://127.0.0.1/', 'auth_url', { deny }), { host: '127.0.0.1' });
  t.like(parseAuthUrl('http://169.254.169.254/', 'auth_url', { deny: parseAddressDenyList('none') }), { host: '169.254.169.254' });
  const v6 = parseAddressDenyList('fd00:ec2::254/128, 10.0.0.0/8');
  t.throws(() => parseAuthUrl('http://[fd00:ec2::254]/', 'auth_url', { deny: v6 }), { message: /denied range \(fd00:ec2::254\/128/ });
  t.throws(() => parseAuthUrl('http://10.1.2.3/', 'auth_url', { deny: v6 }), { message: /denied range \(10\.0\.0\.0\/8/ });
  t.throws(() => parseAddressDenyList('10.0.0.0/33'), { message: /^VIMMON_PROBE_DENY: "10\.0\.0\.0\/33" is not an address range/ });
  t.throws(() => parseAddressDenyList('metadata.internal'), { message: /^VIMMON_PROBE_DENY: / });
  // Through the configuration: default, none, a list, a bad value naming the variable.
  t.deepEqual(loadConfig({}).probeDeny.ranges, ['169.254.0.0/16']);
  t.deepEqual(loadConfig({ VIMMON_PROBE_DENY: 'none' }).probeDeny.ranges, []);
  t.deepEqual(loadConfig({ VIMMON_PROBE_DENY: '169.254.0.0/16, fd00:ec2::254/128' }).probeDeny.ranges, [
    '169.254.0.0/16',
    'fd00:ec2::254/128',
  ]);
  t.throws(() => loadConfig({ VIMMON_PROBE_DENY: '169.254.0.0/16,nope' }), { message: /^VIMMON_PROBE_DENY: "nope"/ });
});

test('RegisterVim and UpdateVim refuse a denied address with INVALID_ARGUMENT through a real server', async (t) => {
  const mesh = await startMesh(t);
  const client = mesh.vims();
  const base = { name: 'metadata', authUrl: 'http://169.254.169.254/latest/meta-data/' };
  const err = await t.throwsAsync(client.registerVim(base));
  t.is((err as unknown as { code: Status }).code, Status.INVALID_ARGUMENT);
  t.regex((err as unknown as { details: string }).details, /^auth_url: 169\.254\.169\.254 is in a denied range/);
  const hidden = await t.throwsAsync(client.registerVim({ ...base, authUrl: 'http://0xa9.0xfe.0xa9.0xfe/' }));
  t.is((hidden as unknown as { code: Status }).code, Status.INVALID_ARGUMENT);
  const rows = await mesh.query(`select count(*)::int as n from vim`);
  t.is(rows[0]!.n, 0, 'nothing stored');

  const { vim } = await client.registerVim({ ...base, authUrl: 'http://127.0.0.1:9/v3' });
  const update = await t.throwsAsync(
    client.updateVim({ vim: { id: vim!.id, authUrl: 'http://[::ffff:169.254.169.254]/' }, updateMask: ['auth_url'] }),
  );
  t.is((update as unknown as { code: Status }).code, Status.INVALID_ARGUMENT);
  t.regex((update as unknown as { details: string }).details, /^vim\.auth_url: .* is in a denied range/);
  t.is((await client.getVim({ id: vim!.id })).vim!.authUrl, 'http://127.0.0.1:9/v3');
});

for (const kind of ['tcp', 'http', 'icmp'] as const) {
  test(`${kind} probe: a name that resolves to a denied address fails without connecting`, async (t) => {
    const target = await countingListener(t);
    const probe = createProbes({ deny: loopbackDenied })[kind];
    const round = await probeRound(probe, parseAuthUrl(`http://localhost:${target.port}/v3`), { count: 3, timeoutMs: 1_000 }, never);
    t.false(round.ok);
    t.is(round.attempts, 1, 'a denied address is final: no second attempt');
    t.regex(
      round.error,
      /^auth_url: localhost resolves to (127\.0\.0\.1|::1), which is in a denied range \((127\.0\.0\.0\/8|::1\/128), VIMMON_PROBE_DENY\); not probed$/,
    );
    await new Promise((r) => setTimeout(r, 50));
    t.is(target.accepted(), 0);
  });
}

test('every probe kind refuses a literal denied address, IPv4-mapped IPv6 included, with the default list', async (t) => {
  for (const text of ['http://169.254.169.254/', 'http://[::ffff:169.254.169.254]/', 'http://[::ffff:a9fe:a9fe]:8080/']) {
    // Stored before the deny list existed, or sent to the executor directly: parsed without it.
    const target = parseAuthUrl(text);
    for (const kind of ['tcp', 'http', 'icmp'] as const) {
      const round = await probeRound(defaultProbes[kind], target, { count: 2, timeoutMs: 500 }, never);
      t.false(round.ok, `${kind} ${text}`);
      t.is(round.attempts, 1);
      t.regex(round.error, /is in a denied range \(169\.254\.0\.0\/16, VIMMON_PROBE_DENY\); not probed$/, `${kind} ${text}`);
    }
  }
});

test('the default list leaves loopback probes working, by address and by name', async (t) => {
  const target = await countingListener(t);
  for (const host of ['127.0.0.1', 'localhost']) {
    for (const kind of ['tcp', 'http'] as const) {
      const round = await probeRound(
        defaultProbes[kind],
        parseAuthUrl(`http://${host}:${target.port}/v3`),
        { count: 1, timeoutMs: 2_000 },
        never,
      );
      t.true(round.ok, `${kind} ${host}: ${round.error}`);
    }
  }
  t.true(target.accepted() >= 4);
  // An empty list ("none") checks nothing and resolves nothing itself.
  const none = createProbes({ deny: parseAddressDenyList('none') });
  t.true((await probeRound(none.tcp, parseAuthUrl(`http://localhost:${target.port}/`), { count: 1, timeoutMs: 2_000 }, never)).ok);
});

test('an executor with a deny list reports a VIM whose name resolves to a denied address UNREACHABLE, never connecting', async (t) => {
  const logger = testLogger();
  const db = await createTestDatabase(t);
  const conductor = await startConductor({ logger, orm: db.orm, address: '127.0.0.1:0' });
  t.teardown(() => conductor.stop());
  const executor = await startExecutor({
    logger,
    address: '127.0.0.1:0',
    conductorTarget: conductor.address,
    reportBackoff: { baseDelayMs: 50, maxDelayMs: 500 },
    probeDeny: loopbackDenied,
  });
  t.teardown(() => executor.stop());
  const server = await startServer({
    logger,
    orm: await db.open(),
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    executors: [executor.address],
    key: Buffer.alloc(32, 5),
    reconcileIntervalMs: 60_000,
    probeDeny: loopbackDenied,
  });
  t.teardown(() => server.stop());
  const channel = createChannel(server.address);
  t.teardown(() => channel.close());
  const client = createClient(VimServiceDefinition, channel);
  const target = await countingListener(t);

  // The server refuses the literal; a name passes it and meets the executor's check.
  const literal = await t.throwsAsync(client.registerVim({ name: 'lit', authUrl: `http://127.0.0.1:${target.port}/v3` }));
  t.is((literal as unknown as { code: Status }).code, Status.INVALID_ARGUMENT);
  const { vim } = await client.registerVim({
    name: 'by-name',
    authUrl: `http://localhost:${target.port}/v3`,
    monitor: {
      probe: ProbeKind.PROBE_KIND_HTTP,
      interval: { seconds: 0, nanos: 200_000_000 },
      timeout: { seconds: 0, nanos: 100_000_000 },
      unreachableAfter: 1,
    },
  });
  await eventually(
    async () => (await client.getVim({ id: vim!.id })).vim!.status === VimStatus.VIM_STATUS_UNREACHABLE,
    10_000,
    'UNREACHABLE',
  );
  t.is(target.accepted(), 0);
});
