// Neutron ports, as Doctor's inspector sets them (update_neutron_port_dp_status):
// the client against the double on the wire, then a real inspector end to end:
// a host fault sets data_plane_status DOWN on exactly the host's ports, under
// the Nova bound, and ACTIVE again on recovery; off unless configured.
import test, { type ExecutionContext } from 'ava';
import { createKeystoneSession } from '../common/keystone.js';
import { createMetrics } from '../common/metrics.js';
import { createNeutronClient, NeutronError } from '../inspector/neutron.js';
import { hostEvent, peakInFlight, profileDone, startInspectorHarness } from './support/inspector-harness.js';
import { startOpenStackDouble, type OpenStackDouble } from './support/openstack-double.js';

async function openstack(t: ExecutionContext): Promise<OpenStackDouble> {
  const d = await startOpenStackDouble();
  t.teardown(() => d.close());
  return d;
}

function neutronFor(d: OpenStackDouble, pageSize?: number) {
  const session = createKeystoneSession({ authUrl: d.authUrl, ...d.credentials, interface: 'public' });
  return createNeutronClient(session, { pageSize });
}

const isPortPut = (m: string, p: string) => m === 'PUT' && /^\/networking\/v2\.0\/ports\/[^/?]+$/.test(p);
const isNetwork = (_m: string, p: string) => p.startsWith('/networking');
const statusOf = (d: OpenStackDouble, host: string) =>
  d
    .ports()
    .filter((p) => p.host === host)
    .map((p) => p.dataPlaneStatus);

test('client: the ports of a host from the catalog network endpoint, paged, then PUT data_plane_status', async (t) => {
  const d = await openstack(t);
  const onA = Array.from({ length: 7 }, () => d.addPort({ host: 'compute-a' }));
  d.addPort({ host: 'compute-b' });
  const neutron = neutronFor(d, 3);
  const ports = await neutron.portsOnHost('compute-a');
  t.deepEqual(ports.map((p) => p.id).sort(), [...onA].sort());
  t.true(
    ports.every((p) => p.dataPlaneStatus === null),
    'never set',
  );
  const lists = d.networkCalls().filter((c) => c.method === 'GET');
  t.is(lists.length, 3, 'pages of 3 + 3 + 1');
  for (const c of lists) {
    t.true(c.path.startsWith('/networking/v2.0/ports?'), 'the unversioned catalog URL, with /v2.0');
    const q = new URL(c.path, 'http://x').searchParams;
    t.is(q.get('binding:host_id'), 'compute-a');
    t.deepEqual(q.getAll('fields'), ['id', 'binding:host_id', 'data_plane_status']);
    t.truthy(c.headers['x-auth-token']);
  }

  await neutron.setDataPlaneStatus(onA[0]!, 'DOWN');
  const put = d.networkCalls().at(-1)!;
  t.is(put.method, 'PUT');
  t.is(put.path, `/networking/v2.0/ports/${onA[0]}`);
  t.deepEqual(put.body, { port: { data_plane_status: 'DOWN' } });
  t.like(
    d.ports().find((p) => p.id === onA[0]),
    { dataPlaneStatus: 'DOWN', status: 'DOWN' },
  );
  t.deepEqual((await neutron.portsOnHost('compute-a')).find((p) => p.id === onA[0])?.dataPlaneStatus, 'DOWN');
});

test("client: Neutron's errors keep their status and say whether a retry can help; a revoked token is replaced once", async (t) => {
  const d = await openstack(t);
  const port = d.addPort({ host: 'compute-a' });
  const neutron = neutronFor(d);

  const gone = await t.throwsAsync(neutron.setDataPlaneStatus('no-such-port', 'DOWN'), { instanceOf: NeutronError });
  t.is(gone!.status, 404);
  t.false(gone!.retryable);
  t.regex(gone!.message, /Port no-such-port could not be found/);

  d.failNext(1, 503, isNetwork);
  const down = await t.throwsAsync(neutron.setDataPlaneStatus(port, 'DOWN'), { instanceOf: NeutronError });
  t.is(down!.status, 503);
  t.true(down!.retryable);

  d.dataPlaneStatusExtension = false;
  const unknown = await t.throwsAsync(neutron.setDataPlaneStatus(port, 'DOWN'), { instanceOf: NeutronError });
  t.is(unknown!.status, 400);
  t.false(unknown!.retryable);
  t.regex(unknown!.message, /Unrecognized attribute\(s\) 'data_plane_status'/);
  d.dataPlaneStatusExtension = true;

  d.revokeTokens();
  await neutron.setDataPlaneStatus(port, 'DOWN');
  t.deepEqual(
    d
      .networkCalls()
      .slice(-2)
      .map((c) => c.status),
    [401, 200],
  );
  t.is(statusOf(d, 'compute-a')[0], 'DOWN');
});

test('a host fault sets DOWN on exactly its ports, under the Nova bound, and recovery sets them ACTIVE again', async (t) => {
  const d = await openstack(t);
  const vms = Array.from({ length: 6 }, (_, i) => d.addServer({ name: `a${i}`, host: 'compute-a' }));
  const onA = vms.map((vm) => d.addPort({ host: 'compute-a', deviceId: vm }));
  onA.push(...Array.from({ length: 6 }, () => d.addPort({ host: 'compute-a' })));
  const already = d.addPort({ host: 'compute-a', dataPlaneStatus: 'DOWN' });
  d.addPort({ host: 'compute-b' });
  d.addPort({ host: 'compute-b', dataPlaneStatus: 'DOWN' });
  // Slow enough that the calls overlap and the bound is what limits them.
  d.setLatency(40, (m, p) => isPortPut(m, p) || (m === 'POST' && p.includes('/action')));
  const concurrency = 4;
  const metrics = createMetrics({ processMetrics: false });
  const { client } = await startInspectorHarness(t, d, { neutron: true, resetState: 'error', novaConcurrency: concurrency, metrics });
  t.true((await client.getStatus({})).neutronConfigured);

  const { faultIds } = await client.reportEvents({ events: [hostEvent('compute-a')] });
  const profile = await profileDone(client, faultIds[0]!);
  t.deepEqual(statusOf(d, 'compute-a'), Array(onA.length + 1).fill('DOWN'));
  t.deepEqual(statusOf(d, 'compute-b'), [null, 'DOWN'], 'other hosts untouched');
  const puts = d.networkCalls().filter((c) => isPortPut(c.method, c.path));
  t.deepEqual(puts.map((c) => c.path.split('/').pop()).sort(), [...onA].sort(), 'one PUT per port, none for a port already DOWN');
  t.false(puts.some((c) => c.path.endsWith(already)));
  t.like(profile, { portCount: onA.length + 1, portsUpdated: onA.length, portsFailed: 0, vmsReset: vms.length });
  t.truthy(profile.portsUpdatedAt);
  t.truthy(profile.toPortsUpdated);
  // Nova and Neutron calls share one bound.
  const bounded = [...d.computeCalls().filter((c) => c.method !== 'GET'), ...puts];
  const peak = peakInFlight(bounded);
  t.true(peak <= concurrency, `peak ${peak} calls in flight`);
  t.log(`peak ${peak} Nova + Neutron calls in flight (bound ${concurrency})`);
  const text = await metrics.registry.getSingleMetricAsString('vimmon_neutron_calls_total');
  t.regex(text, new RegExp(`vimmon_neutron_calls_total\\{operation="port_down",outcome="ok"\\} ${onA.length}\\b`));
  t.regex(text, /vimmon_neutron_calls_total\{operation="list_ports",outcome="ok"\} 1\b/);

  const before = puts.length;
  const up = await client.reportEvents({ events: [hostEvent('compute-a', 'up')] });
  const upProfile = await profileDone(client, up.faultIds[0]!);
  t.deepEqual(statusOf(d, 'compute-a'), Array(onA.length + 1).fill('ACTIVE'), 'every port of the host that was DOWN');
  t.deepEqual(statusOf(d, 'compute-b'), [null, 'DOWN']);
  const upPuts = d
    .networkCalls()
    .filter((c) => isPortPut(c.method, c.path))
    .slice(before);
  t.is(upPuts.length, onA.length + 1);
  t.true(upPuts.every((c) => (c.body as { port: { data_plane_status: string } }).port.data_plane_status === 'ACTIVE'));
  t.like(upProfile, { portCount: onA.length + 1, portsUpdated: onA.length + 1, portsFailed: 0 });
});

test('Neutron failing: retried while a retry can help, refused for good otherwise, and never holding up Nova', async (t) => {
  const d = await openstack(t);
  d.addServer({ host: 'compute-a' });
  const ports = [d.addPort({ host: 'compute-a' }), d.addPort({ host: 'compute-a' })];
  d.failNext(3, 503, isPortPut);
  const { client } = await startInspectorHarness(t, d, { neutron: true, resetState: 'error' });
  const first = await client.reportEvents({ events: [hostEvent('compute-a')] });
  const retried = await profileDone(client, first.faultIds[0]!);
  t.deepEqual(statusOf(d, 'compute-a'), ['DOWN', 'DOWN']);
  t.like(retried, { portsUpdated: 2, portsFailed: 0 });
  t.true(retried.retries >= 3);
  await profileDone(client, (await client.reportEvents({ events: [hostEvent('compute-a', 'up')] })).faultIds[0]!);

  // A Neutron without the extension: every port fails for good, once each; Nova's work is done all the same.
  d.dataPlaneStatusExtension = false;
  const putsBefore = d.networkCalls().filter((c) => isPortPut(c.method, c.path)).length;
  const second = await client.reportEvents({ events: [hostEvent('compute-a')] });
  const refused = await profileDone(client, second.faultIds[0]!);
  t.like(refused, { portsUpdated: 0, portsFailed: 2, vmsReset: 1 });
  t.truthy(refused.hostForcedDownAt);
  t.true(refused.errors.some((e) => /Unrecognized attribute/.test(e) && ports.some((p) => e.includes(p))));
  t.is(d.networkCalls().filter((c) => isPortPut(c.method, c.path)).length - putsBefore, 2, 'no retry of a 400');
});

test('off unless configured: a fault makes no Neutron call', async (t) => {
  const d = await openstack(t);
  d.addServer({ host: 'compute-a' });
  d.addPort({ host: 'compute-a' });
  const { client } = await startInspectorHarness(t, d);
  t.false((await client.getStatus({})).neutronConfigured);
  const { faultIds } = await client.reportEvents({ events: [hostEvent('compute-a')] });
  const profile = await profileDone(client, faultIds[0]!);
  t.truthy(profile.hostForcedDownAt);
  t.is(profile.portCount, 0);
  t.deepEqual(d.networkCalls(), []);
  t.deepEqual(statusOf(d, 'compute-a'), [null]);
});

test('the network endpoint comes from the catalog: none for the interface asked is a clear, terminal error', async (t) => {
  const d = await openstack(t);
  d.addPort({ host: 'compute-a' });
  const session = createKeystoneSession({ authUrl: d.authUrl, ...d.credentials, interface: 'internal' });
  const err = await t.throwsAsync(createNeutronClient(session).portsOnHost('compute-a'), { instanceOf: NeutronError });
  t.false(err!.retryable);
  t.regex(err!.message, /no network endpoint for interface internal \(catalog offers: public@RegionOne\)/);
  t.deepEqual(d.networkCalls(), []);
});
