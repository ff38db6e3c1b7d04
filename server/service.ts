// vimmon.tacker.v1.VimService: VIM lifecycle. The server writes rows and hands
// actions to executors; it never probes a VIM itself.
import { randomUUID } from 'node:crypto';
import { LockMode } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { CallContext } from 'nice-grpc';
import { AlreadyExistsError, InvalidArgumentError, constraintOf, isUniqueViolation } from '../common/errors.js';
import type { AddressDenyList } from '../common/address-deny.js';
import { callLogger, type Logger } from '../common/logger.js';
import type { ServerMetrics } from '../common/metrics.js';
import { sql } from 'kysely';
import { typedSql, type Orm } from '../db/connection.js';
import { VimAuditSchema, VimEventSchema, VimSchema, vimStatusChannel, type StoredStatus, type Vim as VimRow } from '../db/entities.js';
import type { VimStatusNotification } from '../db/notifications.js';
import { Vim, VimAuditRecord, VimEvent, type VimServiceImplementation } from '../gen/vimmon/tacker/v1/vim_service.js';
import { withinReplyBytes } from '../common/reply-size.js';
import { callerOf, readableProjects } from '../common/auth/principal.js';
import { recordAudit, toAuditRecord } from './audit.js';
import { checkCredentialsFitType, sameCredentials, seal, unseal } from './credentials.js';
import { ownerOfNewVim, requireAccess } from './ownership.js';
import type { ExecutorPool } from './executors.js';
import type { Handoff } from './handoff.js';
import { checkProbeCredentials, decodePageToken, encodePageToken, newVim, pageSize, statusFilter, vimId, vimUpdate } from './vim-input.js';
import { actionSpecOf, monitorOf, toProtoVim, toVimEvent } from './vim-view.js';
import { createVimWatch } from './vim-watch.js';
import type { WatchHub } from './watch-hub.js';

export interface VimServiceOptions {
  orm: Orm;
  key: Buffer;
  pool: ExecutorPool;
  handoff: Handoff;
  hub: WatchHub;
  logger: Logger;
  /** Per WatchVims stream; a watcher further behind than this is cut off with RESOURCE_EXHAUSTED. */
  watchQueueLimit?: number;
  /** An auth_url naming an address in these ranges is refused (VIMMON_PROBE_DENY). */
  probeDeny?: AddressDenyList;
  /** Counts WatchVims streams cut for falling behind. */
  metrics?: ServerMetrics;
}

function uniqueToDomain(err: unknown, name: string): never {
  if (isUniqueViolation(err)) {
    const c = constraintOf(err) ?? String((err as Error).message);
    if (c.includes('vim_default_live')) throw new AlreadyExistsError('is_default: another VIM is already the default; clear it first');
    if (c.includes('vim_name_live')) throw new AlreadyExistsError(`name: a VIM named ${JSON.stringify(name)} is already registered`);
  }
  throw err;
}

/** A page token of ListVimAudit and ListVimEvents: the last row id of the previous page. */
function decodeIdPageToken(token: string): number {
  if (!token) return 0;
  const text = Buffer.from(token, 'base64url').toString('utf8');
  if (!/^\d{1,15}$/.test(text)) throw new InvalidArgumentError('page_token', 'malformed');
  return Number(text);
}

export function createVimService(options: VimServiceOptions): VimServiceImplementation {
  const { orm, key, pool, handoff, hub, logger } = options;
  const watch = createVimWatch({
    orm,
    hub,
    logger,
    queueLimit: options.watchQueueLimit,
    onCut: options.metrics && (() => options.metrics!.watchStreamsCut.inc()),
  });
  const fork = () => orm.em.fork() as EntityManager;

  async function recordStatus(em: EntityManager, row: VimRow, to: StoredStatus, actionId: string) {
    if (row.status === to) return;
    const ev = await typedSql(em)
      .insertInto('vim_event')
      .values({
        vim_id: row.id,
        from_status: row.status,
        to_status: to,
        status_reason: '',
        action_id: actionId,
        created_at: sql<Date>`now()`,
      })
      .returning(['id', 'created_at'])
      .executeTakeFirstOrThrow();
    const payload: VimStatusNotification = {
      eventId: Number(ev.id),
      vimId: row.id,
      vimName: row.name,
      from: row.status as StoredStatus,
      to,
      reason: '',
      actionId,
      changedAt: new Date(ev.created_at).toISOString(),
      ownerProject: row.ownerProject,
    };
    // Raw: NOTIFY writes no table, so there is no entity to type it against; the payload is typed above.
    await em.execute(`select pg_notify(?, ?)`, [vimStatusChannel, JSON.stringify(payload)]);
    row.status = to;
    row.statusReason = '';
    row.statusChangedAt = new Date();
  }

  return {
    async registerVim(request, context) {
      const caller = callerOf(context);
      const input = newVim(request, { deny: options.probeDeny });
      const ownerProject = ownerOfNewVim(caller, request.ownerProject);
      const id = randomUUID();
      const now = new Date();
      const executor = pool.candidates(id)[0]!;
      const em = fork();
      let row!: VimRow;
      try {
        await em.transactional(async (tem) => {
          row = tem.create(VimSchema, {
            id,
            name: input.name,
            description: input.description,
            type: input.type,
            authUrl: input.authUrl,
            project: input.project,
            credentialsKind: input.credentials.kind,
            credentialsSealed: seal(input.credentials, key, id),
            probe: input.monitor.probe,
            intervalMs: input.monitor.intervalMs,
            timeoutMs: input.monitor.timeoutMs,
            probeCount: input.monitor.count,
            unreachableAfter: input.monitor.unreachableAfter,
            reportIntervalMs: input.monitor.reportIntervalMs,
            staleAfterMs: input.monitor.staleAfterMs,
            status: 'PENDING',
            actionId: randomUUID(),
            actionAssignedAt: now,
            actionStarted: false,
            executor,
            isDefault: input.isDefault,
            createdAt: now,
            updatedAt: now,
            statusChangedAt: now,
            lastReportAt: null,
            deletedAt: null,
            ownerProject,
          });
          // The audit row refers to the VIM: the VIM goes first.
          await tem.flush();
          recordAudit(tem, { vimId: id, action: 'register', caller, ownerProject });
        });
      } catch (err) {
        uniqueToDomain(err, input.name);
      }
      // Committed: from here on the reconciler owns the VIM's monitoring even if this start fails.
      const launched = await handoff.launch(actionSpecOf(row, key), executor);
      const fresh = await fork().findOne(VimSchema, { id });
      callLogger(context, logger).info('VIM registered', {
        vimId: id,
        name: input.name,
        ownerProject,
        principal: caller.name,
        actionId: launched.actionId,
        executor: launched.executor,
        started: launched.started,
      });
      return { vim: toProtoVim(fresh ?? row, key) };
    },

    async getVim(request, context) {
      const id = vimId(request.id);
      const row = requireAccess(callerOf(context), 'reader', id, await fork().findOne(VimSchema, { id }));
      return { vim: toProtoVim(row, key) };
    },

    async listVims(request, context) {
      const size = pageSize(request.pageSize);
      const status = statusFilter(request.status);
      const cursor = decodePageToken(request.pageToken, status);
      const where: Record<string, unknown> = { deletedAt: null };
      if (status) where.status = status;
      const projects = readableProjects(callerOf(context));
      if (projects) where.ownerProject = { $in: [...projects] };
      if (cursor) {
        const at = new Date(cursor.createdAt);
        where.$or = [{ createdAt: { $gt: at } }, { createdAt: at, id: { $gt: cursor.id } }];
      }
      const rows = await fork().find(VimSchema, where as never, { orderBy: { createdAt: 'asc', id: 'asc' }, limit: size + 1 });
      const vims = rows.slice(0, size).map((r) => toProtoVim(r, key));
      // Cut by size too: a thousand VIMs with long fields would not fit one message.
      const kept = withinReplyBytes(vims, (v) => Vim.encode(v).finish().length);
      const last = rows[kept - 1];
      return {
        vims: vims.slice(0, kept),
        nextPageToken:
          rows.length > kept && last ? encodePageToken({ createdAt: last.createdAt.toISOString(), id: last.id, status: status ?? '' }) : '',
      };
    },

    async updateVim(request, context) {
      const caller = callerOf(context);
      const update = vimUpdate(request, { deny: options.probeDeny });
      const { paths, name, authUrl, credentials } = update;
      const em = fork();
      let restart: { oldActionId: string; oldExecutor: string | null } | undefined;
      let row!: VimRow;
      try {
        await em.transactional(async (tem) => {
          row = requireAccess(
            caller,
            'member',
            update.id,
            await tem.findOne(VimSchema, { id: update.id }, { lockMode: LockMode.PESSIMISTIC_WRITE }),
          );
          const monitor = update.monitor(monitorOf(row));
          const monitorChanged = JSON.stringify(monitor) !== JSON.stringify(monitorOf(row));
          const storedCredentials = unseal(row.credentialsSealed, key, row.id);
          const nextCredentials = credentials ? credentials(storedCredentials) : storedCredentials;
          const credentialsChanged = !sameCredentials(nextCredentials, storedCredentials);
          const authUrlChanged = authUrl !== undefined && authUrl !== row.authUrl;
          if (name !== undefined) row.name = name;
          if (update.description !== undefined) row.description = update.description;
          if (update.type !== undefined) row.type = update.type;
          if (update.project !== undefined) row.project = update.project;
          if (update.isDefault !== undefined) row.isDefault = update.isDefault;
          checkCredentialsFitType(
            nextCredentials,
            row.type as 'openstack' | 'kubernetes',
            credentials ? 'vim.credentials.oidc' : 'vim.type',
          );
          checkProbeCredentials(monitor, nextCredentials, monitorChanged ? 'vim.monitor.probe' : 'vim.credentials');
          if (credentialsChanged) {
            row.credentialsKind = nextCredentials.kind;
            row.credentialsSealed = seal(nextCredentials, key, row.id);
          }
          row.probe = monitor.probe;
          row.intervalMs = monitor.intervalMs;
          row.timeoutMs = monitor.timeoutMs;
          row.probeCount = monitor.count;
          row.unreachableAfter = monitor.unreachableAfter;
          row.reportIntervalMs = monitor.reportIntervalMs;
          row.staleAfterMs = monitor.staleAfterMs;
          if (authUrlChanged || credentialsChanged || monitorChanged) {
            restart = { oldActionId: row.actionId, oldExecutor: row.executor ?? null };
            row.actionId = randomUUID();
            row.actionAssignedAt = new Date();
            row.actionStarted = false;
            row.executor = pool.candidates(row.id)[0]!;
            // A hand-over in progress would make the old settings' successor current.
            row.successorActionId = null;
            row.successorExecutor = null;
            row.successorAssignedAt = null;
            if (authUrlChanged) {
              // What was known of the old endpoint says nothing of the new one.
              row.authUrl = authUrl!;
              row.lastReportAt = null;
              await recordStatus(tem, row, 'PENDING', row.actionId);
            }
          }
          row.updatedAt = new Date();
          recordAudit(tem, { vimId: row.id, action: 'update', caller, ownerProject: row.ownerProject, changedFields: [...paths] });
        });
      } catch (err) {
        uniqueToDomain(err, name ?? '');
      }
      if (restart) {
        // New first, then the old one: the VIM is never left without an action we asked for.
        await handoff.launch(actionSpecOf(row, key), row.executor!);
        await handoff.stop(restart.oldExecutor, restart.oldActionId);
        callLogger(context, logger).info('VIM updated; monitor action replaced', {
          vimId: row.id,
          from: restart.oldActionId,
          to: row.actionId,
        });
      }
      callLogger(context, logger).info('VIM updated', { vimId: row.id, principal: caller.name, fields: [...paths] });
      const fresh = await fork().findOne(VimSchema, { id: row.id });
      return { vim: toProtoVim(fresh ?? row, key) };
    },

    async deregisterVim(request, context) {
      const caller = callerOf(context);
      const id = vimId(request.id);
      const gone = await fork().transactional(async (tem) => {
        const row = requireAccess(caller, 'member', id, await tem.findOne(VimSchema, { id }, { lockMode: LockMode.PESSIMISTIC_WRITE }));
        const was = { actionId: row.actionId, executor: row.executor ?? null };
        row.deletedAt = new Date();
        row.updatedAt = row.deletedAt;
        row.isDefault = false;
        // Nothing of the VIM's secrets outlives it.
        row.credentialsKind = 'none';
        row.credentialsSealed = null;
        recordAudit(tem, { vimId: id, action: 'deregister', caller, ownerProject: row.ownerProject });
        return was;
      });
      await handoff.stop(gone.executor, gone.actionId);
      callLogger(context, logger).info('VIM deregistered', { vimId: id, actionId: gone.actionId, principal: caller.name });
      return {};
    },

    async listVimAudit(request, context) {
      const id = vimId(request.vimId, 'vim_id');
      const size = pageSize(request.pageSize);
      const after = decodeIdPageToken(request.pageToken);
      const em = fork();
      // Deregistered VIMs keep their trail, readable by those who could read the VIM.
      requireAccess(callerOf(context), 'reader', id, await em.findOne(VimSchema, { id }), true);
      const rows = await em.find(VimAuditSchema, { vimId: id, id: { $gt: after } }, { orderBy: { id: 'asc' }, limit: size + 1 });
      const records = rows.slice(0, size).map(toAuditRecord);
      const kept = withinReplyBytes(records, (r) => VimAuditRecord.encode(r).finish().length);
      return {
        records: records.slice(0, kept),
        nextPageToken: rows.length > kept ? Buffer.from(String(records[kept - 1]!.id)).toString('base64url') : '',
      };
    },

    async listVimEvents(request, context) {
      const id = vimId(request.vimId, 'vim_id');
      const size = pageSize(request.pageSize);
      const after = decodeIdPageToken(request.pageToken);
      const em = fork();
      // Like the audit trail: a deregistered VIM's history stays readable by those who could read the VIM.
      const vim = requireAccess(callerOf(context), 'reader', id, await em.findOne(VimSchema, { id }), true);
      const rows = await em.find(VimEventSchema, { vimId: id, id: { $gt: after } }, { orderBy: { id: 'asc' }, limit: size + 1 });
      const events = rows.slice(0, size).map((r) => toVimEvent(r, vim.name));
      const kept = withinReplyBytes(events, (e) => VimEvent.encode(e).finish().length);
      return {
        events: events.slice(0, kept),
        nextPageToken: rows.length > kept ? Buffer.from(String(events[kept - 1]!.eventId)).toString('base64url') : '',
      };
    },

    async *watchVims(request, context: CallContext) {
      if (request.vimIds.length > 1_000) throw new InvalidArgumentError('vim_ids', 'at most 1000');
      const vimIds = request.vimIds.map((v, i) => vimId(v, `vim_ids[${i}]`));
      // Filtered to the projects the caller reads, live and replayed changes alike.
      const projects = readableProjects(callerOf(context));
      yield* watch.watch({ ...request, vimIds }, context.signal, projects ? (owner) => projects.has(owner) : () => true);
    },
  };
}
