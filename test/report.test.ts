// How an executor reads a conductor's answer: what is an answer (stored,
// BAD_ACTION, refused) and what is "nobody answered" (retry with backoff).
import test from 'ava';
import { ClientError, Status } from 'nice-grpc';
import { createConductorReporter, limitReportsInFlight, type Report, type ReportOutcome } from '../executor/report.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import type { VimMonitorAction2ConductorClient } from '../gen/vimmon/conductor/v1/conductor.js';

const report = {
  vimId: '5b7a3c1e-2f9d-4e8a-b6c4-1d2e3f4a5b6c',
  actionId: '7f0c1f52-3d3a-4a51-9a36-5d7f2a0d1e11',
  status: 'REACHABLE' as const,
};

function replying(outcome: () => Promise<{ status: VimStatus }>) {
  return createConductorReporter({ client: { updateVim: outcome } as unknown as VimMonitorAction2ConductorClient, timeoutMs: 1_000 });
}

const fail = (code: Status, details: string) => () =>
  Promise.reject(new ClientError('/vimmon.conductor.v1.VimMonitorAction2Conductor/UpdateVim', code, details));

test('answers: stored, BAD_ACTION', async (t) => {
  t.deepEqual(await replying(async () => ({ status: VimStatus.VIM_STATUS_REACHABLE }))(report, new AbortController().signal), {
    kind: 'stored',
    status: 'REACHABLE',
    reason: '',
  });
  t.deepEqual(await replying(async () => ({ status: VimStatus.VIM_STATUS_BAD_ACTION }))(report, new AbortController().signal), {
    kind: 'bad-action',
  });
});

test('a stream cut by a proxy or a dying conductor is "nobody answered", not a refusal', async (t) => {
  const cut = await replying(fail(Status.INTERNAL, 'Received RST_STREAM with code 0 (Call ended without gRPC status)'))(
    report,
    new AbortController().signal,
  );
  t.is(cut.kind, 'unavailable');
  const unavailable = await replying(fail(Status.UNAVAILABLE, 'No connection established'))(report, new AbortController().signal);
  t.is(unavailable.kind, 'unavailable');
});

test('a conductor refusing the report is a refusal', async (t) => {
  const refused = await replying(fail(Status.INVALID_ARGUMENT, 'vim_id: not a UUID'))(report, new AbortController().signal);
  t.is(refused.kind, 'rejected');
  const internal = await replying(fail(Status.INTERNAL, 'internal error'))(report, new AbortController().signal);
  t.is(internal.kind, 'rejected');
});

test('an executor has at most its bound of calls out; the rest wait, a status change ahead of heartbeats, and a stopped action leaves the queue', async (t) => {
  const sent: Report[] = [];
  const answers: Array<() => void> = [];
  let inFlight = 0;
  let most = 0;
  const limited = limitReportsInFlight(async (r) => {
    sent.push(r);
    inFlight++;
    most = Math.max(most, inFlight);
    await new Promise<void>((resolve) => answers.push(resolve));
    inFlight--;
    return { kind: 'stored', status: r.status, reason: '' } satisfies ReportOutcome;
  }, 2);
  const vim = (i: number) => `5b7a3c1e-2f9d-4e8a-b6c4-${String(i).padStart(12, '0')}`;
  const beat = (i: number, signal = new AbortController().signal) =>
    limited({ vimId: vim(i), actionId: report.actionId, status: 'REACHABLE', heartbeat: true }, signal);
  const turns = () => new Promise((r) => setImmediate(r));

  const calls = [beat(1), beat(2), beat(3)];
  const stopped = new AbortController();
  const gone = beat(4, stopped.signal);
  const news = limited({ vimId: vim(5), actionId: report.actionId, status: 'UNREACHABLE' }, new AbortController().signal);
  await turns();
  t.deepEqual(
    sent.map((r) => r.vimId),
    [vim(1), vim(2)],
    'two out, the others wait',
  );
  stopped.abort();
  t.deepEqual(await gone, { kind: 'unavailable', error: 'aborted' });
  answers.shift()!();
  await turns();
  t.is(sent[2]!.vimId, vim(5), 'the status change went before the heartbeat that waited longer');
  while (answers.length > 0 || sent.length < 4) {
    answers.shift()?.();
    await turns();
  }
  await Promise.all([...calls, news]);
  t.deepEqual(
    sent.map((r) => r.vimId),
    [vim(1), vim(2), vim(5), vim(3)],
    'the stopped action never sent',
  );
  t.is(most, 2);
});
