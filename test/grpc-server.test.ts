// The server factory's error mapping at shutdown: what the shutdown cut short
// is UNAVAILABLE, a caller's mistake keeps its own code.
import test from 'ava';
import { type ClientError, createChannel, createClient, Status } from 'nice-grpc';
import { InvalidArgumentError } from '../common/errors.js';
import { createGrpcServer, serviceEntry } from '../common/grpc-server.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { testLogger } from './support/logger.js';

async function shutdownDuring(t: import('ava').ExecutionContext, fail: () => never): Promise<Status> {
  let entered!: () => void;
  const inside = new Promise<void>((r) => (entered = r));
  const server = createGrpcServer({
    logger: testLogger(),
    shutdownGraceMs: 2_000,
    services: [
      serviceEntry(VimMonitorAction2ConductorDefinition, {
        async updateVim(_request, context) {
          entered();
          // Waits for the shutdown, then fails the way the test says.
          await new Promise<void>((resolve) => context.signal.addEventListener('abort', () => resolve(), { once: true }));
          fail();
        },
      }),
    ],
  });
  const port = await server.listen('127.0.0.1:0');
  const channel = createChannel(`127.0.0.1:${port}`);
  t.teardown(() => channel.close());
  const call = createClient(VimMonitorAction2ConductorDefinition, channel).updateVim({ vimId: '', actionId: '', status: 0 });
  await inside;
  const stopping = server.shutdown();
  const err = (await t.throwsAsync(call)) as ClientError;
  await stopping;
  return err.code;
}

test('an INVALID_ARGUMENT during shutdown keeps its code', async (t) => {
  t.is(
    await shutdownDuring(t, () => {
      throw new InvalidArgumentError('vim_id', 'bad');
    }),
    Status.INVALID_ARGUMENT,
  );
});

test('what the shutdown cut short is UNAVAILABLE', async (t) => {
  t.is(
    await shutdownDuring(t, () => {
      throw Object.assign(new Error('aborted'), { name: 'AbortError' });
    }),
    Status.UNAVAILABLE,
  );
  t.is(
    await shutdownDuring(t, () => {
      throw new Error('something broke');
    }),
    Status.UNAVAILABLE,
  );
});

test('INVALID_ARGUMENT carries the field in a google.rpc.BadRequest detail as well as in the message', async (t) => {
  const { BadRequest, errorDetailsClientMiddleware, RichClientError } = await import('nice-grpc-error-details');
  const { createClientFactory } = await import('nice-grpc');
  const server = createGrpcServer({
    logger: testLogger(),
    services: [
      serviceEntry(VimMonitorAction2ConductorDefinition, {
        async updateVim() {
          throw new InvalidArgumentError('action_id', 'must be a UUID');
        },
      }),
    ],
  });
  const port = await server.listen('127.0.0.1:0');
  const channel = createChannel(`127.0.0.1:${port}`);
  t.teardown(async () => {
    channel.close();
    await server.shutdown();
  });
  const client = createClientFactory().use(errorDetailsClientMiddleware).create(VimMonitorAction2ConductorDefinition, channel);
  const err = (await t.throwsAsync(client.updateVim({ vimId: '', actionId: 'x', status: 0 }))) as InstanceType<typeof RichClientError>;
  t.true(err instanceof RichClientError);
  t.is(err.code, Status.INVALID_ARGUMENT);
  t.is(err.details, 'action_id: must be a UUID');
  const [detail] = err.extra;
  t.is(detail?.$type, BadRequest.$type);
  const violations = (detail as unknown as { fieldViolations: Array<{ field: string; description: string }> }).fieldViolations;
  t.deepEqual(
    violations.map(({ field, description }) => ({ field, description })),
    [{ field: 'action_id', description: 'must be a UUID' }],
  );
});

test('health Watch follows the database state and the shutdown: NOT_SERVING first, then the stream ends UNAVAILABLE', async (t) => {
  const { HealthDefinition, HealthCheckResponse_ServingStatus: S } = await import('../gen/grpc/health/v1/health.js');
  const server = createGrpcServer({
    logger: testLogger(),
    services: [serviceEntry(VimMonitorAction2ConductorDefinition, { updateVim: async () => ({ status: 0 }) })],
  });
  const port = await server.listen('127.0.0.1:0');
  const channel = createChannel(`127.0.0.1:${port}`);
  t.teardown(() => channel.close());
  const health = createClient(HealthDefinition, channel);
  const watch = (service: string) => health.watch({ service })[Symbol.asyncIterator]();
  const whole = watch('');
  const conductor = watch(VimMonitorAction2ConductorDefinition.fullName);
  const unknown = watch('no.such.Service');
  t.is((await whole.next()).value?.status, S.SERVING);
  t.is((await conductor.next()).value?.status, S.SERVING);
  t.is((await unknown.next()).value?.status, S.SERVICE_UNKNOWN);
  server.health.setServing(false);
  t.is((await whole.next()).value?.status, S.NOT_SERVING);
  t.is((await conductor.next()).value?.status, S.NOT_SERVING);
  t.is((await health.check({ service: '' })).status, S.NOT_SERVING);
  server.health.setServing(true);
  t.is((await whole.next()).value?.status, S.SERVING);
  t.is((await conductor.next()).value?.status, S.SERVING);
  const stopping = server.shutdown();
  t.is((await whole.next()).value?.status, S.NOT_SERVING, 'told before the stream ends, so that a proxy drains us');
  const ended = (await t.throwsAsync(whole.next())) as ClientError;
  t.is(ended.code, Status.UNAVAILABLE);
  await t.throwsAsync(conductor.next().then(() => conductor.next()));
  await t.throwsAsync(unknown.next());
  await stopping;
});
