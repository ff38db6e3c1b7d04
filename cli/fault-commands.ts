// `vimmon fault show` (Doctor's profiler points of host faults) and `vimmon
// host list` (the hosts the inspector knows down): the inspector's own view of
// faults. The other host commands are in host-commands.ts.
import type { Command } from 'commander';
import type { Duration } from '../gen/google/protobuf/duration.js';
import { type FaultProfile, FaultProfile as FaultProfileMessage, HostState } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { positiveInteger } from './arguments.js';
import { relativeTime, timeAndAge, type Cell } from './output.js';
import { pages } from './pages.js';
import type { Runner, Session } from './session.js';
import { addHostCommands } from './host-commands.js';
import { protoJson } from './proto-json.js';

export function addFaultCommands(program: Command, run: Runner): void {
  program
    .command('fault')
    .description("Doctor's profiler points of host faults")
    .command('show')
    .description('recent faults, newest first; or one fault in full')
    .argument('[fault]', 'a fault id (from event report or an alarm)')
    .option('--host <host>', "only this host's faults")
    .option('--limit <n>', 'at most this many (default 20)', positiveInteger(1_000))
    .action(
      run<{ host?: string; limit?: number }, [string | undefined]>(async (s, f, id) => {
        if (id !== undefined) {
          const { profile } = await s.call('inspector', `cannot get fault ${JSON.stringify(id)}`, (c) =>
            c.inspector.getFaultProfile({ faultId: id }),
          );
          return showProfile(s, profile!);
        }
        const { profiles } = await s.call('inspector', 'cannot list faults', (c) =>
          c.inspector.listFaultProfiles({ host: f.host ?? '', limit: f.limit ?? 20 }),
        );
        if (s.out.format !== 'table')
          return s.out.list(profiles.map((p) => protoJson('vimmon.inspector.v1.FaultProfile', FaultProfileMessage, p)));
        const now = Date.now();
        s.out.table(
          ['FAULT', 'HOST', 'STATUS', 'RECEIVED', 'VMS', 'ALARMS', 'TO ALARMS', 'TO HOST', 'TO DONE', 'ERRORS'],
          profiles.map((p) => [
            p.faultId,
            p.host,
            p.status,
            relativeTime(p.receivedAt, now),
            String(p.vmCount),
            String(p.alarmCount),
            since(p.toAlarmsSent),
            since(p.status === 'up' ? p.toHostUnforced : p.toHostForcedDown),
            since(p.toCompleted),
            String(p.errors.length),
          ]),
          'no faults',
        );
      }),
    );

  const host = program.command('host').description('compute hosts as the inspector knows them');
  addHostCommands(host, run);
  host
    .command('list')
    .description('every host known down, by name (ListHostsDown)')
    .option('--limit <n>', 'at most this many', positiveInteger(10_000_000))
    .action(
      run<{ limit?: number }>(async (s, f) => {
        const hosts = await pages(f.limit, (pageSize, pageToken) =>
          s.call('inspector', 'cannot list the hosts down', async (c) => {
            const page = await c.inspector.listHostsDown({ pageSize, pageToken });
            return { items: page.hosts, nextPageToken: page.nextPageToken };
          }),
        );
        if (s.out.format !== 'table') return s.out.list(hosts.map((h) => protoJson('vimmon.inspector.v1.HostState', HostState, h)));
        const now = Date.now();
        s.out.table(
          ['HOST', 'STATE', 'SINCE', 'VMS', 'NOVA DONE', 'FAULT'],
          hosts.map((h) => [
            h.host,
            { text: h.state, colour: 'red' },
            relativeTime(h.since, now),
            String(h.vmCount),
            h.novaDone ? 'yes' : 'no',
            h.faultId,
          ]),
          'no hosts down',
        );
      }),
    );
}

/** A profiler interval: "+850µs", "+12.3ms", "+1.20s"; "-" when not reached. */
function since(d: Duration | undefined): string {
  if (!d) return '-';
  const us = d.seconds * 1e6 + d.nanos / 1e3;
  if (us < 1_000) return `+${Math.round(us)}µs`;
  if (us < 1_000_000) return `+${(us / 1_000).toFixed(1)}ms`;
  return `+${(us / 1e6).toFixed(2)}s`;
}

function showProfile(s: Session, p: FaultProfile): void {
  if (s.out.format !== 'table') {
    s.out.object(protoJson('vimmon.inspector.v1.FaultProfile', FaultProfileMessage, p));
    return;
  }
  const now = Date.now();
  const rows: Array<[string, Cell]> = [
    ['fault', p.faultId],
    ['host', p.host],
    ['status', p.status],
    ['monitor', `${p.monitor}${p.monitorEventId ? ` (event ${p.monitorEventId})` : ''}`],
    ['detected (T00)', timeAndAge(p.eventTime, now)],
    ['received (T01)', timeAndAge(p.receivedAt, now)],
    ['vms found (T02)', `${since(p.toVmsFound)}, ${p.vmCount} VMs`],
    ['alarms sent (T03)', `${since(p.toAlarmsSent)}, ${p.alarmCount} alarms`],
  ];
  if (p.status === 'up') rows.push(['host un-forced', since(p.toHostUnforced)]);
  else
    rows.push(
      ['host forced down (T04)', since(p.toHostForcedDown)],
      ['last vm reset (T05)', `${since(p.toLastVmReset)}, ${p.vmsReset} reset`],
    );
  rows.push(
    ['vms gone / failed', `${p.vmsGone} / ${p.vmsFailed}`],
    ['nova retries', String(p.retries)],
    ['completed', since(p.toCompleted)],
  );
  for (const e of p.errors) rows.push(['error', { text: e, colour: 'red' }]);
  s.out.fields(rows);
}
