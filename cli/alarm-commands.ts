// `vimmon alarm watch|list` and `vimmon event report` (a Doctor event, over
// ReportEvents): the inspector's alarms.
import type { Command } from 'commander';
import {
  Alarm,
  type AlarmFilter,
  AlarmType,
  type DeepPartial,
  ReportEventsResponse,
} from '../gen/vimmon/inspector/v1/inspector_service.js';
import { alarmId, collect, eventStatus, isoTime, positiveInteger } from './arguments.js';
import { UsageError } from './failure.js';
import { enumText, relativeTime, type Cell } from './output.js';
import type { Runner } from './session.js';
import { protoJson } from './proto-json.js';

interface FilterFlags {
  host?: string[];
  project?: string[];
  type?: string[];
  instance?: string[];
  vim?: string[];
}

const typeNames = Object.keys(AlarmType)
  .filter((k) => k.startsWith('ALARM_TYPE_') && k !== 'ALARM_TYPE_UNSPECIFIED')
  .map((k) => k.slice('ALARM_TYPE_'.length).toLowerCase());

/** host_down, HOST_DOWN, host-down or ALARM_TYPE_HOST_DOWN. */
function alarmType(text: string): AlarmType {
  const name = `ALARM_TYPE_${text
    .trim()
    .toUpperCase()
    .replace(/^ALARM_TYPE_/, '')
    .replace(/-/g, '_')}`;
  const value = (AlarmType as unknown as Record<string, number>)[name];
  if (value === undefined || value === AlarmType.ALARM_TYPE_UNSPECIFIED) {
    throw new UsageError(`--type: unknown alarm type ${JSON.stringify(text)} (known: ${typeNames.join(', ')})`);
  }
  return value;
}

/** Every filter the contract has goes to the inspector; nothing is filtered here. */
function alarmFilter(f: FilterFlags): DeepPartial<AlarmFilter> {
  return {
    hosts: f.host ?? [],
    projectIds: f.project ?? [],
    types: (f.type ?? []).map(alarmType),
    instanceIds: f.instance ?? [],
    vimIds: f.vim ?? [],
  };
}

function filterOptions(c: Command): Command {
  return c
    .option('--host <host>', 'only alarms of this compute host (repeat for more)', collect)
    .option('--project <project>', "only alarms of this project (an instance's, a VIM's owner)", collect)
    .option('--type <type>', `only this type (repeat for more): ${typeNames.join(', ')}`, collect)
    .option('--instance <id>', 'only alarms of this VM (repeat for more)', collect)
    .option('--vim <id>', 'only alarms of this VIM id (repeat for more)', collect);
}

function subject(a: Alarm): string {
  if (a.vimId) return `vim ${a.vimName || a.vimId}`;
  if (a.instanceId) return `vm ${a.instanceName || a.instanceId} on ${a.host}`;
  return `host ${a.host}`;
}

function severityCell(a: Alarm): Cell {
  return { text: a.severity, colour: a.severity === 'critical' ? 'red' : a.severity === 'low' ? 'green' : undefined };
}

export function addAlarmCommands(program: Command, run: Runner): void {
  const alarm = program.command('alarm').description('alarms of the inspector: host and VM faults, unreachable VIMs');

  filterOptions(
    alarm
      .command('watch')
      .description('one line per alarm as it is raised, until Ctrl-C; reconnects by itself, each alarm once')
      .option('--after <id>', 'first the stored alarms after this id (0: all of them), then live ones', alarmId),
  ).action(
    run<FilterFlags & { after?: number }>(async (s, flags) => {
      const request = { filter: alarmFilter(flags), afterAlarmId: flags.after ?? 0, liveOnly: flags.after === undefined };
      await s.call('inspector', 'cannot watch alarms', async (c) => {
        try {
          for await (const a of c.subscribeAlarms(request, { signal: s.signal })) {
            if (s.out.format !== 'table') s.out.streamed(protoJson('vimmon.inspector.v1.Alarm', Alarm, a));
            else {
              const sev = severityCell(a);
              s.out.line(
                `${a.alarmId}  ${(a.raisedAt ?? new Date()).toISOString()}  ${enumText(AlarmType, a.type, 'ALARM_TYPE_')}  ${subject(a)}  ` +
                  `${a.state}  ${s.out.paint(typeof sev === 'string' ? sev : sev.text, typeof sev === 'string' ? undefined : sev.colour)}`,
              );
            }
          }
        } catch (err) {
          if (!s.signal.aborted) throw err;
        }
      });
    }),
  );

  filterOptions(
    alarm
      .command('list')
      .description('stored alarms in id order')
      .option('--after <id>', 'alarms after this id (the next page: the id a listing ends at)', alarmId)
      .option('--limit <n>', 'at most this many (default 100)', positiveInteger(100_000)),
  ).action(
    run<FilterFlags & { after?: number; limit?: number }>(async (s, flags) => {
      const limit = flags.limit ?? 100;
      const filter = alarmFilter(flags);
      const alarms: Alarm[] = [];
      let after = flags.after ?? 0;
      let more = false;
      while (alarms.length < limit) {
        const page = await s.call('inspector', 'cannot list alarms', (c) =>
          c.inspector.listAlarms({ filter, afterAlarmId: after, pageSize: Math.min(1000, limit - alarms.length) }),
        );
        alarms.push(...page.alarms.slice(0, limit - alarms.length));
        // The inspector moves the cursor forward, or the listing is over.
        if (page.alarms.length === 0 || page.nextAfterAlarmId <= after) break;
        after = page.nextAfterAlarmId;
        more = alarms.length >= limit;
      }
      if (s.out.format !== 'table') return s.out.list(alarms.map((a) => protoJson('vimmon.inspector.v1.Alarm', Alarm, a)));
      const now = Date.now();
      s.out.table(
        ['ID', 'RAISED', 'TYPE', 'SUBJECT', 'PROJECT', 'STATE', 'SEVERITY'],
        alarms.map((a) => [
          String(a.alarmId),
          relativeTime(a.raisedAt, now),
          enumText(AlarmType, a.type, 'ALARM_TYPE_'),
          subject(a),
          a.projectId,
          a.state,
          severityCell(a),
        ]),
        'no alarms',
      );
      if (more) s.out.note(`more may follow: vimmon alarm list --after ${alarms.at(-1)!.alarmId}`);
    }),
  );

  program
    .command('event')
    .description('report monitor events to the inspector (Doctor)')
    .command('report')
    .description('report a host fault, as a Doctor monitor does (ReportEvents; needs the monitor role)')
    .requiredOption('--host <host>', 'the nova-compute host name')
    .option('--type <type>', 'the event type; the inspector acts on compute.host.down and counts others as ignored', 'compute.host.down')
    .option('--status <status>', 'down or up', eventStatus, 'down')
    .option('--time <iso>', 'when the monitor detected it, e.g. 2026-11-22T10:00:00Z (default: when received)', isoTime)
    .option('--monitor <name>', 'the reporting monitor', 'vimmon-cli')
    .option('--monitor-event-id <id>', "the monitor's own id of the event")
    .option('--cause <text>', 'why')
    .option('--severity <level>', 'severity of the alarms raised (default critical)')
    .action(
      run<{
        host: string;
        type: string;
        status: string;
        time?: Date;
        monitor: string;
        monitorEventId?: string;
        cause?: string;
        severity?: string;
      }>(async (s, f) => {
        const event = {
          time: f.time,
          type: f.type,
          hostname: f.host,
          status: f.status,
          monitor: f.monitor,
          monitorEventId: f.monitorEventId ?? '',
          cause: f.cause ?? '',
          severity: f.severity ?? '',
        };
        const reply = await s.call('inspector', `cannot report the event of host ${JSON.stringify(f.host)}`, (c) =>
          c.inspector.reportEvents({ events: [event] }),
        );
        if (s.out.format !== 'table')
          return s.out.object(protoJson('vimmon.inspector.v1.ReportEventsResponse', ReportEventsResponse, reply));
        const parts = [`accepted ${reply.accepted}`];
        if (reply.duplicates) parts.push(`duplicate ${reply.duplicates} (host already ${f.status}: nothing raised)`);
        if (reply.ignored) parts.push(`ignored ${reply.ignored} (not compute.host.down)`);
        s.out.line(parts.join(', '));
        for (const id of reply.faultIds) s.out.line(`fault ${id} (vimmon fault show ${id})`);
      }),
    );
}
