// Doctor's monitors against the inspector, as a contract test against clients
// we did not write: each request is rebuilt byte for byte as OPNFV Doctor's
// Python builds it and sent on a raw TCP socket, so nothing of Node's HTTP
// client stands between the bytes Doctor sends and the inspector.
//
//   sample monitor   doctor_tests/monitor/sample.py (Python 3): requests.put(url,
//                    data=json.dumps(data), headers={'Content-Type':
//                    'application/json', 'Accept': 'application/json',
//                    'X-Auth-Token': token}); the token is None (the header is then
//                    left out) when the inspector is Doctor's sample one.
//   collectd monitor doctor_tests/monitor/collectd_plugin.py (Python 2):
//                    requests.post('http://<ip>:12345/events', data=json.dumps(payload),
//                    headers={'content-type': 'application/json'}), never a token.
//
// Both bodies: [{"id", "time": datetime.now().isoformat() (local, no zone,
// ".ffffff" only when the microseconds are not 0), "type", "details":
// {hostname, status, monitor, monitor_event_id}}]. python-requests sends its
// session's headers first (User-Agent, Accept-Encoding, Accept, Connection),
// the caller's after them (a caller's Accept takes the place of the session's),
// then Content-Length; http.client puts Host before all. Checked against
// python-requests 2.34 on the wire (a socket server printing what it got).
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { createChannel, createClient, Metadata, type Channel } from 'nice-grpc';
import { createAuth, type Auth } from '../common/auth/authenticator.js';
import { keystoneTokenValidatorFromEnv } from '../common/auth/keystone-tokens.js';
import { createPolicy, type Grant } from '../common/auth/policy.js';
import { splitHostPort } from '../common/address.js';
import {
  AlarmType,
  InspectorServiceDefinition,
  type Alarm,
  type InspectorServiceClient,
} from '../gen/vimmon/inspector/v1/inspector_service.js';
import { startInspector, type RunningInspector } from '../inspector/main.js';
import { createTestDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';
import { openrcEnv, startOpenStackDouble, type OpenStackDouble } from './support/openstack-double.js';
import { eventually } from './support/wait.js';

// --- Python, as Doctor's monitors run it ---------------------------------------------------

/** A value as Python's json.dumps writes it by default: ", " and ": " separators, ensure_ascii, keys in the order given. */
function pythonJsonDumps(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return pythonString(v);
  if (Array.isArray(v)) return `[${v.map(pythonJsonDumps).join(', ')}]`;
  const entries = v instanceof Map ? [...v.entries()] : Object.entries(v as Record<string, unknown>);
  return `{${entries.map(([k, x]) => `${pythonString(k)}: ${pythonJsonDumps(x)}`).join(', ')}}`;
}

/** json's ESCAPE_ASCII: everything outside space..~ escaped, short forms for the usual ones, \uXXXX (UTF-16 units) else. */
function pythonString(s: string): string {
  const short: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    const code = s.charCodeAt(i);
    if (short[c]) out += short[c];
    else if (code < 0x20 || code > 0x7e) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else out += c;
  }
  return `${out}"`;
}

/** datetime.now().isoformat() for this local time and microsecond: no zone, the fraction only when it is not 0. */
function pythonNowIsoformat(at: Date, microsecond: number): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const base = `${p(at.getFullYear(), 4)}-${p(at.getMonth() + 1)}-${p(at.getDate())}T${p(at.getHours())}:${p(at.getMinutes())}:${p(at.getSeconds())}`;
  return microsecond === 0 ? base : `${base}.${p(microsecond, 6)}`;
}

/** The instant the inspector takes a naive time for: its fields read as UTC, to the millisecond. */
function naiveAsUtc(iso: string): Date {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{6}))?$/.exec(iso)!;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  return new Date(Date.UTC(y, mo - 1, d, h, mi, s, Math.floor(Number(m[7] ?? '0') / 1000)));
}

/** Now, with a microsecond as Python's clock gives (not 0, so the fraction is written). */
function pythonNow(): { at: Date; microsecond: number } {
  const at = new Date();
  return { at, microsecond: at.getMilliseconds() * 1000 + 1 + Math.floor(Math.random() * 999) };
}

interface MonitorRequest {
  method: 'PUT' | 'POST';
  headers: Array<[string, string]>;
  body: string;
  time: string;
}

/** SampleMonitor.report_error(hostname) of doctor_tests/monitor/sample.py. */
function sampleMonitorRequest(hostname: string, token: string | undefined, now = pythonNow()): MonitorRequest {
  const time = pythonNowIsoformat(now.at, now.microsecond);
  const data = [
    {
      id: 'monitor_sample_id1',
      time,
      type: 'compute.host.down',
      details: { hostname, status: 'down', monitor: 'monitor_sample', monitor_event_id: 'monitor_sample_event1' },
    },
  ];
  const body = pythonJsonDumps(data);
  const headers: Array<[string, string]> = [
    ['User-Agent', 'python-requests/2.34.2'],
    ['Accept-Encoding', 'gzip, deflate'],
    ['Accept', 'application/json'],
    ['Connection', 'keep-alive'],
    ['Content-Type', 'application/json'],
  ];
  // requests drops a header whose value is None.
  if (token !== undefined) headers.push(['X-Auth-Token', token]);
  headers.push(['Content-Length', String(Buffer.byteLength(body))]);
  return { method: 'PUT', headers, body, time };
}

/** DoctorMonitorCollectd.notify_inspector() of doctor_tests/monitor/collectd_plugin.py, monitor_type 'sample'. */
function collectdMonitorRequest(hostname: string, now = pythonNow()): MonitorRequest {
  const time = pythonNowIsoformat(now.at, now.microsecond);
  // Python 2's dict: members in its hash order for these keys, the same on every run (no -R), as printed by Python 2.7.18.
  const payload = [
    new Map<string, unknown>([
      [
        'details',
        new Map<string, unknown>([
          ['status', 'down'],
          ['hostname', hostname],
          ['monitor', 'monitor_sample'],
          ['monitor_event_id', 'monitor_sample_event1'],
        ]),
      ],
      ['type', 'compute.host.down'],
      ['id', 'monitor_sample_id1'],
      ['time', time],
    ]),
  ];
  const body = pythonJsonDumps(payload);
  return {
    method: 'POST',
    headers: [
      ['User-Agent', 'python-requests/2.27.1'],
      ['Accept-Encoding', 'gzip, deflate'],
      ['Accept', '*/*'],
      ['Connection', 'keep-alive'],
      ['content-type', 'application/json'],
      ['Content-Length', String(Buffer.byteLength(body))],
    ],
    body,
    time,
  };
}

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Sends the request's bytes as they are on a fresh connection to /events and reads one answer. */
function sendRaw(httpAddress: string, r: MonitorRequest): Promise<RawAnswer> {
  const { host, port } = splitHostPort(httpAddress);
  const head = [`${r.method} /events HTTP/1.1`, `Host: ${host}:${port}`, ...r.headers.map(([k, v]) => `${k}: ${v}`)].join('\r\n');
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(new Error('no complete answer within 30 s')), 30_000);
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) return;
      const lines = data.subarray(0, end).toString('latin1').split('\r\n');
      const headers = Object.fromEntries(
        lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
      );
      const length = Number(headers['content-length'] ?? 0);
      if (data.length < end + 4 + length) return;
      clearTimeout(timer);
      socket.destroy();
      resolve({ status: Number(lines[0]!.split(' ')[1]), headers, body: data.subarray(end + 4, end + 4 + length).toString('utf8') });
    });
    socket.write(`${head}\r\n\r\n${r.body}`);
  });
}

// --- the inspector, the double, the consumer -----------------------------------------------

interface Setup {
  double: OpenStackDouble;
  inspector: RunningInspector;
  client: InspectorServiceClient;
  /** Alarms a live SubscribeAlarms stream received, in order. */
  alarms: Alarm[];
  /** VM ids by host. */
  vmsOf: Record<string, string[]>;
}

async function setUp(
  t: ExecutionContext,
  hosts: Record<string, number>,
  auth?: (d: OpenStackDouble) => Auth,
  adminToken?: (d: OpenStackDouble) => string,
): Promise<Setup> {
  const double = await startOpenStackDouble();
  t.teardown(() => double.close());
  const vmsOf: Record<string, string[]> = {};
  for (const [host, count] of Object.entries(hosts)) {
    vmsOf[host] = Array.from({ length: count }, (_, i) =>
      double.addServer({ host, name: `${host}-vm${i}`, projectId: `project-${i % 2}` }),
    );
  }
  const db = await createTestDatabase(t);
  const inspector = await startInspector({
    logger: testLogger(),
    orm: db.orm,
    databaseUrl: db.url,
    address: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    env: openrcEnv(double),
    resyncIntervalMs: 60_000,
    novaRetry: { maxAttempts: 3, baseDelayMs: 20, maxDelayMs: 100 },
    auth: auth?.(double),
  });
  const channel: Channel = createChannel(inspector.address);
  const metadata = adminToken ? Metadata({ authorization: `Bearer ${adminToken(double)}` }) : undefined;
  const client = createClient(InspectorServiceDefinition, channel, { '*': { metadata } });
  const alarms: Alarm[] = [];
  const stream = new AbortController();
  const subscribed = (async () => {
    try {
      for await (const a of client.subscribeAlarms({ liveOnly: true }, { signal: stream.signal })) alarms.push(a);
    } catch (err) {
      if (!stream.signal.aborted) throw err;
    }
  })();
  t.teardown(async () => {
    stream.abort();
    await subscribed;
    channel.close();
    await inspector.stop();
  });
  await eventually(async () => (await client.getStatus({})).cachedVms === double.servers().length, 10_000, 'the cache snapshot');
  await eventually(async () => (await client.getStatus({})).subscribers === 1, 10_000, 'the subscriber');
  return { double, inspector, client, alarms, vmsOf };
}

/** The host's alarms (HOST_DOWN and one INSTANCE_DOWN per VM) as the subscriber and ListAlarms have them. */
async function checkAlarms(t: ExecutionContext, s: Setup, host: string, sent: MonitorRequest) {
  const vms = s.vmsOf[host]!;
  const mine = () => s.alarms.filter((a) => a.host === host);
  await eventually(() => mine().length === vms.length + 1, 10_000, `the alarms of ${host}`);
  const alarms = mine();
  const eventTime = naiveAsUtc(sent.time);
  t.is(alarms[0]!.type, AlarmType.ALARM_TYPE_HOST_DOWN, 'the host alarm goes first');
  t.deepEqual(
    alarms
      .filter((a) => a.type === AlarmType.ALARM_TYPE_INSTANCE_DOWN)
      .map((a) => a.instanceId)
      .sort(),
    [...vms].sort(),
  );
  for (const a of alarms) {
    t.like(a, { monitor: 'monitor_sample', monitorEventId: 'monitor_sample_event1', severity: 'critical' });
    t.is(a.eventTime?.getTime(), eventTime.getTime(), `${sent.time} is read as UTC`);
  }
  const listed = await s.client.listAlarms({ filter: { hosts: [host] }, pageSize: 1_000 });
  t.deepEqual(
    listed.alarms.map((a) => a.alarmId),
    alarms.map((a) => a.alarmId),
    'ListAlarms has the same alarms, stored',
  );
  // The Nova side as the inspector drives it: the host forced down, each VM reset (the default).
  await eventually(
    () => s.double.services().find((v) => v.host === host && v.binary === 'nova-compute')?.forcedDown,
    10_000,
    `${host} forced down`,
  );
  await eventually(
    () => s.double.servers().filter((v) => v.host === host && v.status === 'ERROR').length === vms.length,
    10_000,
    `the VMs of ${host} in error`,
  );
}

test('the sample monitor (PUT, no token for a sample inspector) and the collectd monitor (POST, Python 2) raise their alarms', async (t) => {
  const s = await setUp(t, { 'compute-s': 3, 'compute-c': 2, 'compute-z': 1 });

  const sample = sampleMonitorRequest('compute-s', undefined);
  t.regex(
    sample.body,
    /^\[\{"id": "monitor_sample_id1", "time": "\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}", "type": "compute\.host\.down", "details": \{"hostname": "compute-s", /,
  );
  const sampleAnswer = await sendRaw(s.inspector.httpAddress, sample);
  t.is(sampleAnswer.status, 202);
  t.deepEqual(JSON.parse(sampleAnswer.body), { accepted: 1, ignored: 0 });
  await checkAlarms(t, s, 'compute-s', sample);

  const collectd = collectdMonitorRequest('compute-c');
  t.true(collectd.body.startsWith('[{"details": {"status": "down", "hostname": "compute-c", '), collectd.body);
  const collectdAnswer = await sendRaw(s.inspector.httpAddress, collectd);
  t.is(collectdAnswer.status, 202, collectdAnswer.body);
  t.deepEqual(JSON.parse(collectdAnswer.body), { accepted: 1, ignored: 0 });
  await checkAlarms(t, s, 'compute-c', collectd);

  // datetime.isoformat() leaves the fraction out when the microseconds are 0.
  const whole = new Date();
  whole.setMilliseconds(0);
  const zero = collectdMonitorRequest('compute-z', { at: whole, microsecond: 0 });
  t.regex(zero.time, /T\d{2}:\d{2}:\d{2}$/);
  t.is((await sendRaw(s.inspector.httpAddress, zero)).status, 202);
  await checkAlarms(t, s, 'compute-z', zero);

  // The collectd monitor reports once, but a repeated report is a duplicate by either method.
  t.is((await sendRaw(s.inspector.httpAddress, collectdMonitorRequest('compute-c'))).status, 202);
  t.is((await sendRaw(s.inspector.httpAddress, sampleMonitorRequest('compute-c', undefined))).status, 202);
  await eventually(async () => (await s.client.getStatus({})).eventsDuplicate === 2, 5_000, 'two duplicates counted');
  t.is(s.alarms.filter((a) => a.host === 'compute-c').length, 3, 'no alarm for a host already down');

  // POST keeps every check of PUT: a bad body is 400 naming the field, and raises nothing.
  const bad = collectdMonitorRequest('');
  const badAnswer = await sendRaw(s.inspector.httpAddress, bad);
  t.is(badAnswer.status, 400);
  t.like(JSON.parse(badAnswer.body), { field: '[0].details.hostname' });
  const late = { ...collectdMonitorRequest('compute-late') };
  late.body = late.body.replace(/"time": "[^"]*"/, '"time": "2026-02-30T10:00:00"');
  late.headers = late.headers.map(([k, v]) => [k, k === 'Content-Length' ? String(Buffer.byteLength(late.body)) : v]);
  const lateAnswer = await sendRaw(s.inspector.httpAddress, late);
  t.is(lateAnswer.status, 400);
  t.like(JSON.parse(lateAnswer.body), { field: '[0].time' });
  const other = await sendRaw(s.inspector.httpAddress, { ...sample, method: 'DELETE' as 'PUT' });
  t.is(other.status, 405);
  t.is(other.headers.allow, 'PUT, POST');
});

test('with authentication on: a monitor token in X-Auth-Token passes, no token is 401, a reader is 403; the collectd monitor needs POST opened', async (t) => {
  const keystoneAuth = (overrides: Array<[string, Grant[]]>) => (d: OpenStackDouble) => {
    return createAuth({
      mode: 'enforced',
      keystone: keystoneTokenValidatorFromEnv(openrcEnv(d)),
      policy: createPolicy(overrides),
    });
  };
  const admin = (d: OpenStackDouble) => d.issueToken({ userName: 'noc', projectId: d.projectId, roles: ['admin'] });
  const s = await setUp(t, { 'compute-a': 2, 'compute-b': 1 }, keystoneAuth([]), admin);
  // Doctor's user, given the monitor role in Keystone (session.get_token() in the sample monitor).
  const monitorToken = s.double.issueToken({ userName: 'doctor', projectId: randomUUID().replaceAll('-', ''), roles: ['monitor'] });
  const readerToken = s.double.issueToken({ userName: 'tenant', projectId: randomUUID().replaceAll('-', ''), roles: ['reader'] });

  const anonymous = await sendRaw(s.inspector.httpAddress, sampleMonitorRequest('compute-a', undefined));
  t.is(anonymous.status, 401);
  t.is(anonymous.headers['www-authenticate'], 'Bearer');
  t.is((await sendRaw(s.inspector.httpAddress, sampleMonitorRequest('compute-a', readerToken))).status, 403);
  t.is((await sendRaw(s.inspector.httpAddress, sampleMonitorRequest('compute-a', 'gAAAAnot-a-token'))).status, 401);
  t.is(s.alarms.length, 0, 'refused requests raised nothing');

  const sample = sampleMonitorRequest('compute-a', monitorToken);
  const answer = await sendRaw(s.inspector.httpAddress, sample);
  t.is(answer.status, 202, answer.body);
  await checkAlarms(t, s, 'compute-a', sample);

  // The collectd monitor sends no token: refused under the default policy.
  t.is((await sendRaw(s.inspector.httpAddress, collectdMonitorRequest('compute-b'))).status, 401);
  t.is(s.alarms.filter((a) => a.host === 'compute-b').length, 0);

  // An operator who lets it in opens its rule alone (http:POST /events), PUT still needs the monitor role.
  const open = await setUp(t, { 'compute-b': 1 }, keystoneAuth([['http:POST /events', ['anyone']]]), admin);
  const collectd = collectdMonitorRequest('compute-b');
  t.is((await sendRaw(open.inspector.httpAddress, collectd)).status, 202);
  await checkAlarms(t, open, 'compute-b', collectd);
  t.is((await sendRaw(open.inspector.httpAddress, sampleMonitorRequest('compute-b', undefined))).status, 401);
});
