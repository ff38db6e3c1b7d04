// `vimmon status`: every role's grpc.health.v1 answer, address by address, the
// actions each executor runs (ListActions) and the inspector's GetStatus. Each
// address gets an SDK client of its own: the SDK balances a role's addresses,
// and here each one must answer for itself.
import type { Command } from 'commander';
import { HealthCheckResponse_ServingStatus } from '../gen/grpc/health/v1/health.js';
import { GetStatusResponse } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { callErrorText, CommandFailure } from './failure.js';
import { relativeTime, type Cell } from './output.js';
import type { VimmonClient } from '../client/src/index.js';
import type { Runner, Session } from './session.js';
import type { RoleName } from './target.js';
import { protoJson } from './proto-json.js';

interface RoleState {
  role: RoleName;
  address: string;
  health: string;
  error?: string;
  actions?: number;
  actionsError?: string;
  inspector?: GetStatusResponse;
  inspectorError?: string;
}

const roles: RoleName[] = ['server', 'conductor', 'executor', 'inspector'];

// ListActions pages; a count past this is reported as "more than".
const maxActionsCounted = 1_000_000;

async function check(s: Session, state: RoleState): Promise<void> {
  const client = s.clientFor(state.role, state.address);
  try {
    await Promise.all([health(state, client), details(state, client)]);
  } finally {
    client.close();
  }
}

async function health(state: RoleState, client: VimmonClient): Promise<void> {
  try {
    const reply = await client.health[state.role].check({ service: '' });
    state.health = HealthCheckResponse_ServingStatus[reply.status] ?? String(reply.status);
  } catch (err) {
    state.health = 'UNREACHABLE';
    state.error = callErrorText(err);
  }
}

/** The role's own calls: the executors' actions, the inspector's state. */
async function details(state: RoleState, client: VimmonClient): Promise<void> {
  if (state.role === 'inspector') {
    try {
      state.inspector = await client.inspector.getStatus({});
    } catch (err) {
      state.inspectorError = `GetStatus: ${callErrorText(err)}`;
    }
  }
  if (state.role !== 'executor') return;
  let count = 0;
  let pageToken = '';
  try {
    do {
      const page = await client.executor.listActions({ pageSize: 1000, pageToken });
      count += page.actions.length;
      if (page.nextPageToken === pageToken) break;
      pageToken = page.nextPageToken;
    } while (pageToken && count < maxActionsCounted);
    state.actions = count;
  } catch (err) {
    state.actionsError = `ListActions: ${callErrorText(err)}`;
  }
}

function inspectorSummary(st: GetStatusResponse, now: number): string {
  const parts = [
    `${st.eventsReceived} events`,
    `${st.subscribers} subscribers`,
    `${st.cachedVms} VMs cached${st.cacheSyncedAt ? ` (synced ${relativeTime(st.cacheSyncedAt, now)})` : ''}`,
    `${st.hostsDownTotal} hosts down`,
    `last alarm ${st.lastAlarmId}`,
  ];
  if (st.alarmsPendingStore) parts.push(`${st.alarmsPendingStore} alarms not yet stored`);
  if (st.alarmsQuarantined) parts.push(`${st.alarmsQuarantined} alarms quarantined`);
  if (st.missingConfig.length) parts.push(`missing ${st.missingConfig.join(' ')}`);
  return parts.join(', ');
}

function detailText(st: RoleState, now: number): string {
  if (st.error) return st.error;
  if (st.actionsError) return st.actionsError;
  if (st.inspectorError) return st.inspectorError;
  if (st.actions !== undefined)
    return `${st.actions >= maxActionsCounted ? 'more than ' : ''}${st.actions} action${st.actions === 1 ? '' : 's'}`;
  if (st.inspector) return inspectorSummary(st.inspector, now);
  return '';
}

export function addStatusCommand(program: Command, run: Runner): void {
  program
    .command('status')
    .description("every role's health, the executors' actions, the inspector's state; exit 1 unless every role is SERVING")
    .action(
      run<object>(async (s) => {
        const states: RoleState[] = roles.flatMap((role) => s.target.addresses[role].map((address) => ({ role, address, health: '' })));
        await Promise.all(states.map((st) => check(s, st)));
        const now = Date.now();
        if (s.out.format !== 'table') {
          s.out.list(
            states.map((st) => ({
              role: st.role,
              address: st.address,
              health: st.health,
              ...(st.error && { error: st.error }),
              ...(st.actions !== undefined && { actions: st.actions }),
              ...(st.actionsError && { actionsError: st.actionsError }),
              ...(st.inspector && { inspector: protoJson('vimmon.inspector.v1.GetStatusResponse', GetStatusResponse, st.inspector) }),
              ...(st.inspectorError && { inspectorError: st.inspectorError }),
            })),
          );
        } else {
          s.out.table(
            ['ROLE', 'ADDRESS', 'HEALTH', 'DETAILS'],
            states.map((st): Cell[] => [
              st.role,
              st.address,
              { text: st.health, colour: st.health === 'SERVING' ? 'green' : 'red' },
              detailText(st, now),
            ]),
          );
        }
        const bad = states.filter((st) => st.health !== 'SERVING');
        if (bad.length > 0)
          throw new CommandFailure(
            `${bad.length} of ${states.length} not serving: ${bad.map((b) => `${b.role} at ${b.address}`).join(', ')}`,
          );
      }),
    );
}
