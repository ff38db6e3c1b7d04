// `vimmon host affected` (the VMs a fault affects, from the inspector's cache)
// and `vimmon host maintenance start|end|list` (Doctor's maintenance states: a
// host under planned work gets no automatic fault management).
import type { Command } from 'commander';
import {
  AffectedInstance,
  HostMaintenance,
  HostState,
  MaintenanceState,
  type SetHostMaintenanceResponse,
} from '../gen/vimmon/inspector/v1/inspector_service.js';
import { positiveInteger } from './arguments.js';
import { UsageError } from './failure.js';
import { relativeTime, type Cell } from './output.js';
import { pages } from './pages.js';
import { protoJson } from './proto-json.js';
import type { Runner, Session } from './session.js';

export function addHostCommands(host: Command, run: Runner): void {
  host
    .command('affected')
    .description("the VMs on a host and the host's state, from the inspector's cache (ListAffectedInstances)")
    .argument('[host]', 'the nova-compute host name')
    .option('--fault <id>', 'the host of this fault instead (while it is the current one)')
    .option('--limit <n>', 'at most this many VMs', positiveInteger(10_000_000))
    .action(
      run<{ fault?: string; limit?: number }, [string | undefined]>(async (s, f, name) => {
        if ((name === undefined) === (f.fault === undefined)) throw new UsageError('give a host or --fault, not both');
        let state: HostState | undefined;
        const instances = await pages(f.limit, (pageSize, pageToken) =>
          s.call('inspector', `cannot list the VMs of ${name ? `host ${JSON.stringify(name)}` : `fault ${f.fault}`}`, async (c) => {
            const page = await c.inspector.listAffectedInstances({ host: name ?? '', faultId: f.fault ?? '', pageSize, pageToken });
            state ??= page.host;
            return { items: page.instances, nextPageToken: page.nextPageToken };
          }),
        );
        if (s.out.format !== 'table') {
          s.out.object({
            host: state ? protoJson('vimmon.inspector.v1.HostState', HostState, state) : null,
            instances: instances.map((i) => protoJson('vimmon.inspector.v1.AffectedInstance', AffectedInstance, i)),
          });
          return;
        }
        if (state) {
          const now = Date.now();
          s.out.fields([
            ['host', state.host],
            ['state', { text: state.state || 'up', colour: state.state === 'down' ? 'red' : undefined }],
            ['since', relativeTime(state.since, now)],
            ['fault', state.faultId || '-'],
          ]);
        }
        s.out.table(
          ['INSTANCE', 'NAME', 'PROJECT', 'VM STATE'],
          instances.map((i) => [i.instanceId, i.instanceName, i.projectId, i.vmState || '-']),
          'no VMs on that host in the cache',
        );
      }),
    );

  const maintenance = host
    .command('maintenance')
    .description("Doctor's maintenance: no automatic fault management for a host under planned work");
  const set = (state: MaintenanceState, verb: string) =>
    run<{ session?: string; reason?: string }, [string]>(async (s, f, name) => {
      const reply = await s.call('inspector', `cannot ${verb} maintenance of host ${JSON.stringify(name)}`, (c) =>
        c.inspector.setHostMaintenance({ host: name, state, sessionId: f.session ?? '', reason: f.reason ?? '' }),
      );
      showChange(s, name, reply);
    });
  maintenance
    .command('start')
    .description('put a host in maintenance (IN_MAINTENANCE): its faults raise alarms marked expected and call nothing')
    .argument('<host>', 'the nova-compute host name')
    .option('--session <id>', "the maintenance session (Doctor's session_id)")
    .option('--reason <text>', 'why, kept and put on the alarms')
    .action(set(MaintenanceState.MAINTENANCE_STATE_IN_MAINTENANCE, 'start'));
  maintenance
    .command('end')
    .description('end a host’s maintenance (MAINTENANCE_COMPLETE): work held back meanwhile is done now')
    .argument('<host>', 'the nova-compute host name')
    .option('--session <id>', "the maintenance session (Doctor's session_id)")
    .action(set(MaintenanceState.MAINTENANCE_STATE_MAINTENANCE_COMPLETE, 'end'));
  maintenance
    .command('list')
    .description('the hosts in maintenance (ListHostsInMaintenance)')
    .option('--limit <n>', 'at most this many', positiveInteger(10_000_000))
    .action(
      run<{ limit?: number }>(async (s, f) => {
        const hosts = await pages(f.limit, (pageSize, pageToken) =>
          s.call('inspector', 'cannot list the hosts in maintenance', async (c) => {
            const page = await c.inspector.listHostsInMaintenance({ pageSize, pageToken });
            return { items: page.hosts, nextPageToken: page.nextPageToken };
          }),
        );
        if (s.out.format !== 'table')
          return s.out.list(hosts.map((h) => protoJson('vimmon.inspector.v1.HostMaintenance', HostMaintenance, h)));
        const now = Date.now();
        s.out.table(
          ['HOST', 'SINCE', 'SESSION', 'BY', 'REASON'],
          hosts.map((h): Cell[] => [h.host, relativeTime(h.since, now), h.sessionId || '-', h.setBy || '-', h.reason || '-']),
          'no hosts in maintenance',
        );
      }),
    );
}

function showChange(s: Session, host: string, reply: SetHostMaintenanceResponse): void {
  if (s.out.format !== 'table') {
    s.out.object({
      changed: reply.changed,
      maintenance: reply.maintenance ? protoJson('vimmon.inspector.v1.HostMaintenance', HostMaintenance, reply.maintenance) : null,
    });
    return;
  }
  const now = reply.maintenance ? `in maintenance since ${relativeTime(reply.maintenance.since, Date.now())}` : 'not in maintenance';
  s.out.line(`host ${host}: ${now}${reply.changed ? '' : ' (unchanged)'}`);
}
