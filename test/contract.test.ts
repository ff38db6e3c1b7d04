// The contract every role keeps: health SERVING for the server and each
// service, reflection (v1 and v1alpha) that describes every method from
// nothing, INVALID_ARGUMENT naming the field for a bad request, and server
// streams ended with UNAVAILABLE at shutdown.
import test, { type ExecutionContext } from 'ava';
import { createChannel, createClient, Status } from 'nice-grpc';
import type { RunningRole } from '../common/role.js';
import { startConductor } from '../conductor/main.js';
import { startExecutor } from '../executor/main.js';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../gen/grpc/health/v1/health.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { ExecutorServiceDefinition } from '../gen/vimmon/executor/v1/executor_service.js';
import { InspectorServiceDefinition } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { VimServiceDefinition } from '../gen/vimmon/tacker/v1/vim_service.js';
import { startInspector } from '../inspector/main.js';
import { startServer } from '../server/main.js';
import { createTestDatabase } from './support/database.js';
import { testLogger } from './support/logger.js';
import { walkReflection } from './support/reflection-client.js';

interface RoleCase {
  service: string;
  start(t: ExecutionContext): Promise<RunningRole>;
  /** A request with one bad field, and the field the error must name. */
  badRequest(address: string): Promise<unknown>;
  badField: string;
  /** Opens a server stream and returns its first read (undefined if the role has none). */
  openStream?(address: string): Promise<unknown>;
}

const logger = testLogger();

const roles: Record<string, RoleCase> = {
  server: {
    service: VimServiceDefinition.fullName,
    async start(t) {
      const db = await createTestDatabase(t);
      return startServer({
        logger,
        orm: db.orm,
        databaseUrl: db.url,
        address: '127.0.0.1:0',
        executors: ['127.0.0.1:1'],
        key: Buffer.alloc(32),
        reconcileIntervalMs: 60_000,
      });
    },
    badRequest: (a) => createClient(VimServiceDefinition, createChannel(a)).registerVim({ name: 'x', authUrl: 'gopher://h' }),
    badField: 'auth_url',
    openStream: (a) => createClient(VimServiceDefinition, createChannel(a)).watchVims({})[Symbol.asyncIterator]().next(),
  },
  conductor: {
    service: VimMonitorAction2ConductorDefinition.fullName,
    async start(t) {
      const db = await createTestDatabase(t);
      return startConductor({ logger, orm: db.orm, address: '127.0.0.1:0' });
    },
    badRequest: (a) =>
      createClient(VimMonitorAction2ConductorDefinition, createChannel(a)).updateVim({ vimId: 'x', actionId: 'y', status: 2 }),
    badField: 'vim_id',
  },
  executor: {
    service: ExecutorServiceDefinition.fullName,
    start: async () => startExecutor({ logger, address: '127.0.0.1:0', conductorTarget: '127.0.0.1:1' }),
    badRequest: (a) =>
      createClient(ExecutorServiceDefinition, createChannel(a)).startAction({
        actionId: '7f0c1f52-3d3a-4a51-9a36-5d7f2a0d1e11',
        vimId: '5b7a3c1e-2f9d-4e8a-b6c4-1d2e3f4a5b6c',
        authUrl: 'http://h:1/',
        monitor: { interval: { seconds: 0, nanos: 1_000_000 } },
      }),
    badField: 'monitor.interval',
    openStream: (a) => createClient(ExecutorServiceDefinition, createChannel(a)).watchActions({})[Symbol.asyncIterator]().next(),
  },
  inspector: {
    service: InspectorServiceDefinition.fullName,
    async start(t) {
      const db = await createTestDatabase(t);
      return startInspector({
        logger,
        orm: db.orm,
        databaseUrl: db.url,
        address: '127.0.0.1:0',
        httpAddress: '127.0.0.1:0',
        env: {},
        resyncIntervalMs: 60_000,
      });
    },
    badRequest: (a) =>
      createClient(InspectorServiceDefinition, createChannel(a)).reportEvents({
        events: [{ type: 'compute.host.down', hostname: 'h', status: 'sideways' }],
      }),
    badField: 'events[0].status',
    openStream: (a) =>
      createClient(InspectorServiceDefinition, createChannel(a)).subscribeAlarms({ liveOnly: true })[Symbol.asyncIterator]().next(),
  },
};

for (const [name, role] of Object.entries(roles)) {
  test(`${name}: health, reflection v1 and v1alpha, INVALID_ARGUMENT naming the field, streams end at shutdown`, async (t) => {
    const running = await role.start(t);
    t.teardown(() => running.stop());
    const health = createClient(HealthDefinition, createChannel(running.address));
    t.is((await health.check({ service: '' })).status, HealthCheckResponse_ServingStatus.SERVING);
    t.is((await health.check({ service: role.service })).status, HealthCheckResponse_ServingStatus.SERVING);
    const unknown = (await t.throwsAsync(health.check({ service: 'no.such.Service' }))) as unknown as { code: Status };
    t.is(unknown.code, Status.NOT_FOUND);

    for (const version of ['v1', 'v1alpha'] as const) {
      const walk = await walkReflection(running.address, version);
      t.true(walk.services.includes(role.service), `${version} lists ${role.service}`);
      t.true(walk.services.includes('grpc.health.v1.Health'));
      const described = walk.service(role.service);
      t.truthy(described, `${version} describes ${role.service} from reflection alone`);
      t.true(described!.methods.length > 0);
    }

    const bad = (await t.throwsAsync(role.badRequest(running.address))) as unknown as { code: Status; details: string };
    t.is(bad.code, Status.INVALID_ARGUMENT);
    t.true(bad.details.includes(role.badField), bad.details);

    if (role.openStream) {
      const first = role.openStream(running.address);
      await new Promise((r) => setTimeout(r, 100));
      await running.stop();
      const ended = (await t.throwsAsync(first as Promise<unknown>)) as unknown as { code: Status };
      t.is(ended.code, Status.UNAVAILABLE);
    }
  });
}
