// `vimmon vim register|list|show|update|deregister|watch|events`, like
// python-tackerclient's `openstack vim …` and `kubectl get -w`.
import { type Command, Option } from 'commander';
import { durationToMs } from '../common/duration.js';
import { VimStatus, VimStatusReason } from '../gen/vimmon/common/v1/status.js';
import {
  type MonitorPolicy,
  ProbeKind,
  type Vim,
  Vim as VimMessage,
  VimAuditAction,
  VimAuditRecord,
  VimEvent,
  VimType,
  WatchVimsResponse,
} from '../gen/vimmon/tacker/v1/vim_service.js';
import { collect, positiveInteger } from './arguments.js';
import { enumText, relativeTime, statusCell, timeAndAge, type Cell, type Printer } from './output.js';
import type { Runner, Session } from './session.js';
import { pages } from './pages.js';
import { allVims, findVim } from './vim-lookup.js';
import { registerRequest, settableKeys, vimChange, type CredentialFlags, type RegisterFlags } from './vim-request.js';
import { protoJson } from './proto-json.js';

const statusChoices: Record<string, VimStatus> = {
  pending: VimStatus.VIM_STATUS_PENDING,
  reachable: VimStatus.VIM_STATUS_REACHABLE,
  unreachable: VimStatus.VIM_STATUS_UNREACHABLE,
};

function credentialOptions(c: Command): Command {
  return c
    .option('--username <name>', 'user of password credentials')
    .option('--password-file <file>', 'a file holding the password (- reads standard input)')
    .option('--password-env <variable>', 'an environment variable holding the password')
    .option('--user-domain <name>', "the user's domain (Keystone)")
    .option('--project-domain <name>', "the project's domain (Keystone)")
    .option('--bearer-token-file <file>', 'a file holding a bearer token (Kubernetes; - reads standard input)')
    .option('--bearer-token-env <variable>', 'an environment variable holding the bearer token')
    .option(
      '--oidc-token-url <url>',
      "OpenID Connect (Kubernetes): the provider's token endpoint, with --client-id, --username and a password",
    )
    .option('--client-id <id>', 'OpenID Connect client id')
    .option('--client-secret-file <file>', 'a file holding the OpenID Connect client secret (- reads standard input)')
    .option('--client-secret-env <variable>', 'an environment variable holding the OpenID Connect client secret')
    .option('--ssl-ca-cert-file <file>', "the VIM's CA certificate(s), PEM: the probes verify its TLS against them");
}

export function addVimCommands(program: Command, run: Runner): void {
  const vim = program.command('vim').description('register, list, change and watch VIMs (VimService)');

  credentialOptions(
    vim
      .command('register')
      .description('register a VIM; it starts PENDING and is probed at once')
      .argument('<name>', 'unique among live VIMs')
      .option('--auth-url <url>', "the VIM's identity endpoint (http or https), e.g. https://10.0.0.1:5000/v3")
      .option('--type <type>', 'openstack or kubernetes (default openstack)')
      .option('--project <project>', 'the project used at the VIM')
      .option('--description <text>', 'free text')
      .option(
        '--config-file <file>',
        "Tacker's vim.yaml: auth_url, username, password, project_name, project_domain_name, user_domain_name, bearer_token, oidc_token_url, client_id, client_secret, ssl_ca_cert, type",
      )
      .option('--default', 'make it the default VIM')
      .option('--owner-project <project>', 'the owning project (default: your project when you have one)')
      .option(
        '--monitor <key=value>',
        'monitor policy: probe=tcp|http|icmp|auth, interval=10s, timeout=1s, count, unreachable_after, report_interval, stale_after',
        collect,
      ),
  ).action(
    run<RegisterFlags, [string]>(async (s, flags, name) => {
      const request = await registerRequest(s.io, name, flags);
      const { vim } = await s.call('server', `cannot register VIM ${JSON.stringify(name)}`, (c) => c.server.registerVim(request));
      showVim(s, vim!);
    }),
  );

  vim
    .command('list')
    .description('list VIMs, oldest first')
    .addOption(new Option('--status <status>', 'only VIMs in this status').choices(Object.keys(statusChoices)))
    .option('--limit <n>', 'at most this many', positiveInteger(1_000_000))
    .action(
      run<{ status?: string; limit?: number }>(async (s, flags) => {
        const status = flags.status ? statusChoices[flags.status] : undefined;
        const vims: Vim[] = [];
        for await (const v of allVims(s, { status, limit: flags.limit })) {
          if (s.out.format === 'json') s.out.streamed(protoJson('vimmon.tacker.v1.Vim', VimMessage, v));
          else vims.push(v);
        }
        if (s.out.format === 'yaml') return s.out.list(vims.map((v) => protoJson('vimmon.tacker.v1.Vim', VimMessage, v)));
        const now = Date.now();
        s.out.table(
          ['ID', 'NAME', 'TYPE', 'STATUS', 'DEFAULT', 'AUTH URL', 'STATUS CHANGED'],
          vims.map((v) => [
            v.id,
            v.name,
            typeText(v.type),
            statusWithReason(v.status, v.statusReason),
            v.isDefault ? 'yes' : '',
            v.authUrl,
            relativeTime(v.statusChangedAt, now),
          ]),
          'no VIMs',
        );
      }),
    );

  vim
    .command('show')
    .description('one VIM, by id or name')
    .argument('<vim>', 'id or name')
    .action(
      run<object, [string]>(async (s, _flags, ref) => {
        const found = await findVim(s, ref);
        showVim(s, found.vim!);
      }),
    );

  credentialOptions(
    vim
      .command('update')
      .description('change a VIM: --set key=value for each field')
      .argument('<vim>', 'id or name')
      .option('--set <key=value>', `a field to change; keys: ${settableKeys.join(', ')}`, collect),
  )
    .addHelpText('after', '\nChanging auth_url, credentials or a monitor field starts a new monitor action.')
    .action(
      run<CredentialFlags & { set?: string[] }, [string]>(async (s, flags, ref) => {
        const change = await vimChange(s.io, flags.set ?? [], flags);
        const { id } = await findVim(s, ref);
        const { vim } = await s.call('server', `cannot update VIM ${JSON.stringify(ref)}`, (c) =>
          c.server.updateVim({ vim: { ...change.vim, id }, updateMask: change.paths }),
        );
        showVim(s, vim!);
      }),
    );

  vim
    .command('deregister')
    .description('remove a VIM and stop its monitoring')
    .argument('<vim>', 'id or name')
    .action(
      run<object, [string]>(async (s, _flags, ref) => {
        const found = await findVim(s, ref);
        await s.call('server', `cannot deregister VIM ${JSON.stringify(ref)}`, (c) => c.server.deregisterVim({ id: found.id }));
        if (s.out.format === 'table') s.out.line(`deregistered VIM ${found.vim!.name} (${found.id})`);
        else s.out.object({ id: found.id, name: found.vim!.name, deregistered: true });
      }),
    );

  vim
    .command('watch')
    .description('one line per status change, until Ctrl-C; reconnects by itself')
    .argument('[vims...]', 'ids or names (default: every VIM)')
    .option('--initial', "first one line with each VIM's current status")
    .action(
      run<{ initial?: boolean }, [string[]]>(async (s, flags, refs) => {
        const vimIds: string[] = [];
        for (const ref of refs) vimIds.push((await findVim(s, ref)).id);
        await s.call('server', 'cannot watch VIMs', async (c) => {
          try {
            for await (const change of c.watchVims({ vimIds, sendInitial: flags.initial ?? false }, { signal: s.signal })) {
              if (s.out.format === 'table') s.out.line(changeLine(s.out, change));
              else s.out.streamed(protoJson('vimmon.tacker.v1.WatchVimsResponse', WatchVimsResponse, change));
            }
          } catch (err) {
            if (!s.signal.aborted) throw err;
          }
        });
      }),
    );

  vim
    .command('events')
    .description("a VIM's stored status changes, oldest first (also after it was deregistered, by id)")
    .argument('<vim>', 'id or name')
    .option('--limit <n>', 'at most this many', positiveInteger(1_000_000))
    .action(
      run<{ limit?: number }, [string]>(async (s, flags, ref) => {
        const { id } = await findVim(s, ref, { gone: true });
        const events = await pages(flags.limit, (pageSize, pageToken) =>
          s.call('server', `cannot list the events of VIM ${JSON.stringify(ref)}`, async (c) => {
            const page = await c.server.listVimEvents({ vimId: id, pageSize, pageToken });
            return { items: page.events, nextPageToken: page.nextPageToken };
          }),
        );
        if (s.out.format !== 'table') return s.out.list(events.map((e) => protoJson('vimmon.tacker.v1.VimEvent', VimEvent, e)));
        const now = Date.now();
        s.out.table(
          ['EVENT', 'CHANGED', 'FROM', 'TO', 'ACTION'],
          events.map((e) => [
            String(e.eventId),
            timeAndAge(e.changedAt, now),
            statusCell(e.previousStatus),
            statusWithReason(e.status, e.statusReason),
            e.actionId,
          ]),
          'no status changes stored',
        );
      }),
    );

  vim
    .command('audit')
    .description('who registered, changed and deregistered a VIM, oldest first (also after deregistration, by id)')
    .argument('<vim>', 'id or name')
    .option('--limit <n>', 'at most this many', positiveInteger(1_000_000))
    .action(
      run<{ limit?: number }, [string]>(async (s, flags, ref) => {
        const { id } = await findVim(s, ref, { gone: true });
        const records = await pages(flags.limit, (pageSize, pageToken) =>
          s.call('server', `cannot read the audit trail of VIM ${JSON.stringify(ref)}`, async (c) => {
            const page = await c.server.listVimAudit({ vimId: id, pageSize, pageToken });
            return { items: page.records, nextPageToken: page.nextPageToken };
          }),
        );
        if (s.out.format !== 'table')
          return s.out.list(records.map((r) => protoJson('vimmon.tacker.v1.VimAuditRecord', VimAuditRecord, r)));
        const now = Date.now();
        s.out.table(
          ['TIME', 'ACTION', 'BY', 'BY PROJECT', 'OWNER', 'CHANGED'],
          records.map((r) => [
            timeAndAge(r.time, now),
            enumText(VimAuditAction, r.action, 'VIM_AUDIT_ACTION_').toLowerCase(),
            r.principal,
            r.principalProject,
            r.ownerProject,
            r.changedFields.join(','),
          ]),
          'no audit records',
        );
      }),
    );
}

/** The status, and why when the VIM refused: "UNREACHABLE (credentials rejected)". */
function statusWithReason(status: VimStatus, reason: VimStatusReason): Cell {
  const cell = statusCell(status);
  if (!reason) return cell;
  const why = enumText(VimStatusReason, reason, 'VIM_STATUS_REASON_').toLowerCase().replace(/_/g, ' ');
  return typeof cell === 'string' ? `${cell} (${why})` : { ...cell, text: `${cell.text} (${why})` };
}

function caText(pem: string | undefined): string {
  const n = pem ? (pem.match(/-----BEGIN CERTIFICATE-----/g) ?? []).length : 0;
  return n === 0 ? 'none (https certificates not verified)' : n === 1 ? '1 certificate' : `${n} certificates`;
}

function typeText(t: VimType): string {
  return t === VimType.VIM_TYPE_UNSPECIFIED ? 'openstack' : enumText(VimType, t, 'VIM_TYPE_').toLowerCase();
}

function changeLine(out: Printer, c: WatchVimsResponse): string {
  const paint = (cell: Cell) => (typeof cell === 'string' ? cell : out.paint(cell.text, cell.colour));
  const when = (c.changedAt ?? new Date()).toISOString();
  const status = paint(statusWithReason(c.status, c.statusReason));
  if (c.eventId === 0) return `${when}  ${c.vimName}  ${status}  (current)`;
  return `${when}  ${c.vimName}  ${paint(statusCell(c.previousStatus))} → ${status}  (event ${c.eventId})`;
}

function durationText(d: MonitorPolicy['interval']): string {
  const ms = durationToMs(d);
  if (ms === undefined) return 'default';
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function showVim(s: Session, v: Vim): void {
  if (s.out.format !== 'table') {
    s.out.object(protoJson('vimmon.tacker.v1.Vim', VimMessage, v));
    return;
  }
  const now = Date.now();
  const m = v.monitor;
  const credentials = v.credentials?.password
    ? `password of ${v.credentials.password.username}${v.credentials.password.userDomainName ? ` (domain ${v.credentials.password.userDomainName})` : ''}`
    : v.credentials?.token
      ? 'bearer token'
      : v.credentials?.oidc
        ? `OpenID Connect as ${v.credentials.oidc.username} (client ${v.credentials.oidc.clientId})`
        : 'none';
  s.out.fields([
    ['id', v.id],
    ['name', v.name],
    ['description', v.description],
    ['type', typeText(v.type)],
    ['status', statusWithReason(v.status, v.statusReason)],
    ['auth_url', v.authUrl],
    ['project', v.project],
    ['owner_project', v.ownerProject],
    ['is_default', v.isDefault ? 'yes' : 'no'],
    ['credentials', credentials],
    ['ssl_ca_cert', caText(v.credentials?.sslCaCert)],
    [
      'monitor',
      m
        ? `${enumText(ProbeKind, m.probe || ProbeKind.PROBE_KIND_TCP, 'PROBE_KIND_').toLowerCase()} every ${durationText(m.interval)}, timeout ${durationText(m.timeout)}, ` +
          `count ${m.count}, unreachable after ${m.unreachableAfter}, report every ${durationText(m.reportInterval)}, stale after ${durationText(m.staleAfter)}`
        : 'default',
    ],
    ['action_id', v.actionId],
    ['executor', v.executor],
    ['created_at', timeAndAge(v.createdAt, now)],
    ['updated_at', timeAndAge(v.updatedAt, now)],
    ['status_changed_at', timeAndAge(v.statusChangedAt, now)],
    ['last_report_at', timeAndAge(v.lastReportAt, now)],
  ]);
}
