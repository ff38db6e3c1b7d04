// vimmon.tacker.v1.VimService: VIM lifecycle. The server writes rows and hands
// actions to executors; it never probes a VIM itself.
import { randomUUID } from 'node:crypto';
import { LockMode } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { CallContext } from 'nice-grpc';
import { parseAuthUrl } from '../common/auth-url.js';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, ResourceExhaustedError, constraintOf, isUniqueViolation } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { resolveMonitorPolicy } from '../common/monitor-policy.js';
import { statusToProto } from '../common/vim-status.js';
import type { Orm } from '../db/connection.js';
import { VimSchema, vimStatusChannel, type Vim as VimRow } from '../db/entities.js';
import type { VimServiceImplementation, WatchVimsResponse } from '../gen/vimmon/tacker/v1/vim_service.js';
import { sameCredentials, seal, unseal, validateCredentials } from './credentials.js';
import type { ExecutorPool } from './executors.js';
import type { Handoff } from './handoff.js';
import {
  decodePageToken,
  encodePageToken,
  newVim,
  pageSize,
  statusFilter,
  text,
  updateMask,
  vimId,
  vimName,
  vimType,
} from './vim-input.js';
import { monitorOf, toProtoVim } from './vim-view.js';
import type { VimChange, WatchHub } from './watch-hub.js';

export interface VimServiceOptions {
  orm: Orm;
  key: Buffer;
  pool: ExecutorPool;
  handoff: Handoff;
  hub: WatchHub;
  logger: Logger;
  /** Per WatchVims stream; a watcher further behind than this is cut off with RESOURCE_EXHAUSTED. */
  watchQueueLimit?: number;
}

function uniqueToDomain(err: unknown, name: string): never {
  if (isUniqueViolation(err)) {
    const c = constraintOf(err) ?? String((err as Error).message);
    if (c.includes('vim_default_live')) throw new AlreadyExistsError('is_default: another VIM is already the default; clear it first');
    if (c.includes('vim_name_live')) throw new AlreadyExistsError(`name: a VIM named ${JSON.stringify(name)} is already registered`);
  }
  throw err;
}

export function createVimService(options: VimServiceOptions): VimServiceImplementation {
  const { orm, key, pool, handoff, hub, logger } = options;
  const queueLimit = options.watchQueueLimit ?? 10_000;
  const fork = () => orm.em.fork() as EntityManager;

  async function findLive(em: EntityManager, id: string, lock = false): Promise<VimRow> {
    const row = await em.findOne(VimSchema, { id, deletedAt: null }, lock ? { lockMode: LockMode.PESSIMISTIC_WRITE } : {});
    if (!row) throw new NotFoundError(`VIM ${id} not found`);
    return row;
  }

  async function recordStatus(em: EntityManager, row: VimRow, to: string, actionId: string) {
    if (row.status === to) return;
    const [ev] = await em.execute<Array<{ id: string; created_at: Date }>>(
      `insert into vim_event (vim_id, from_status, to_status, action_id, created_at) values (?, ?, ?, ?, now()) returning id, created_at`,
      [row.id, row.status, to, actionId],
    );
    const payload = {
      eventId: Number(ev!.id),
      vimId: row.id,
      vimName: row.name,
      from: row.status,
      to,
      actionId,
      changedAt: new Date(ev!.created_at).toISOString(),
    };
    await em.execute(`select pg_notify(?, ?)`, [vimStatusChannel, JSON.stringify(payload)]);
    row.status = to;
    row.statusChangedAt = new Date();
  }

  return {
    async registerVim(request) {
      const input = newVim(request);
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
          });
        });
      } catch (err) {
        uniqueToDomain(err, input.name);
      }
      // Committed: from here on the reconciler owns the VIM's monitoring even if this start fails.
      const launched = await handoff.launch(
        { actionId: row.actionId, vimId: id, authUrl: row.authUrl, monitor: input.monitor, knownStatus: 'PENDING' },
        executor,
      );
      const fresh = await fork().findOne(VimSchema, { id });
      logger.info('VIM registered', { vimId: id, name: input.name, actionId: launched.actionId, executor: launched.executor, started: launched.started });
      return { vim: toProtoVim(fresh ?? row, key) };
    },

    async getVim(request) {
      const id = vimId(request.id);
      return { vim: toProtoVim(await findLive(fork(), id), key) };
    },

    async listVims(request) {
      const size = pageSize(request.pageSize);
      const status = statusFilter(request.status);
      const cursor = decodePageToken(request.pageToken, status);
      const where: Record<string, unknown> = { deletedAt: null };
      if (status) where.status = status;
      if (cursor) {
        const at = new Date(cursor.createdAt);
        where.$or = [{ createdAt: { $gt: at } }, { createdAt: at, id: { $gt: cursor.id } }];
      }
      const rows = await fork().find(VimSchema, where as never, { orderBy: { createdAt: 'asc', id: 'asc' }, limit: size + 1 });
      const page = rows.slice(0, size);
      const last = page[page.length - 1];
      return {
        vims: page.map((r) => toProtoVim(r, key)),
        nextPageToken: rows.length > size && last ? encodePageToken({ createdAt: last.createdAt.toISOString(), id: last.id, status: status ?? '' }) : '',
      };
    },

    async updateVim(request) {
      if (!request.vim) throw new InvalidArgumentError('vim', 'required');
      const id = vimId(request.vim.id, 'vim.id');
      const paths = updateMask(request.updateMask);
      const v = request.vim;
      const em = fork();
      let restart: { oldActionId: string; oldExecutor: string | null } | undefined;
      let row!: VimRow;
      // Validate everything before touching the row: nothing half-written.
      const name = paths.has('name') ? vimName(v.name, 'vim.name') : undefined;
      const description = paths.has('description') ? text(v.description, 'vim.description', 1024) : undefined;
      const type = paths.has('type') ? vimType(v.type, 'vim.type') : undefined;
      const authUrl = paths.has('auth_url') ? parseAuthUrl(v.authUrl, 'vim.auth_url').href : undefined;
      const project = paths.has('project') ? text(v.project, 'vim.project', 255) : undefined;
      const credentials = paths.has('credentials') ? validateCredentials(v.credentials, 'vim.credentials') : undefined;
      try {
        await em.transactional(async (tem) => {
          row = await findLive(tem, id, true);
          let monitor = monitorOf(row);
          if (paths.has('monitor')) monitor = resolveMonitorPolicy(v.monitor, 'vim.monitor');
          else if ([...paths].some((p) => p.startsWith('monitor.'))) {
            const m = v.monitor;
            const partial = {
              probe: paths.has('monitor.probe') ? (m?.probe ?? 0) : 0,
              interval: paths.has('monitor.interval') ? m?.interval : undefined,
              timeout: paths.has('monitor.timeout') ? m?.timeout : undefined,
              count: paths.has('monitor.count') ? (m?.count ?? 0) : 0,
              unreachableAfter: paths.has('monitor.unreachable_after') ? (m?.unreachableAfter ?? 0) : 0,
              reportInterval: paths.has('monitor.report_interval') ? m?.reportInterval : undefined,
              staleAfter: paths.has('monitor.stale_after') ? m?.staleAfter : undefined,
            };
            monitor = resolveMonitorPolicy(partial, 'vim.monitor', monitor);
          }
          const monitorChanged = JSON.stringify(monitor) !== JSON.stringify(monitorOf(row));
          const credentialsChanged = credentials !== undefined && !sameCredentials(credentials, unseal(row.credentialsSealed, key, row.id));
          const authUrlChanged = authUrl !== undefined && authUrl !== row.authUrl;
          if (name !== undefined) row.name = name;
          if (description !== undefined) row.description = description;
          if (type !== undefined) row.type = type;
          if (project !== undefined) row.project = project;
          if (paths.has('is_default')) row.isDefault = v.isDefault;
          if (credentials !== undefined) {
            row.credentialsKind = credentials.kind;
            row.credentialsSealed = seal(credentials, key, row.id);
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
            if (authUrlChanged) {
              // What was known of the old endpoint says nothing of the new one.
              row.authUrl = authUrl!;
              row.lastReportAt = null;
              await recordStatus(tem, row, 'PENDING', row.actionId);
            }
          }
          row.updatedAt = new Date();
        });
      } catch (err) {
        uniqueToDomain(err, name ?? '');
      }
      if (restart) {
        // New first, then the old one: the VIM is never left without an action we asked for.
        await handoff.launch(
          { actionId: row.actionId, vimId: row.id, authUrl: row.authUrl, monitor: monitorOf(row), knownStatus: row.status },
          row.executor!,
        );
        await handoff.stop(restart.oldExecutor, restart.oldActionId);
        logger.info('VIM updated; monitor action replaced', { vimId: row.id, from: restart.oldActionId, to: row.actionId });
      }
      const fresh = await fork().findOne(VimSchema, { id: row.id });
      return { vim: toProtoVim(fresh ?? row, key) };
    },

    async deregisterVim(request) {
      const id = vimId(request.id);
      const rows = await fork().execute<Array<{ action_id: string; executor: string | null }>>(
        `update vim set deleted_at = now(), updated_at = now(), is_default = false
          where id = ? and deleted_at is null returning action_id, executor`,
        [id],
      );
      const gone = rows[0];
      if (!gone) throw new NotFoundError(`VIM ${id} not found`);
      await handoff.stop(gone.executor, gone.action_id);
      logger.info('VIM deregistered', { vimId: id, actionId: gone.action_id });
      return {};
    },

    async *watchVims(request, context: CallContext) {
      const filter = new Set(request.vimIds.map((v, i) => vimId(v, `vim_ids[${i}]`)));
      const queue: WatchVimsResponse[] = [];
      let wake: (() => void) | undefined;
      let overflow = false;
      const unsubscribe = hub.subscribe((c: VimChange) => {
        if (filter.size > 0 && !filter.has(c.vimId)) return;
        if (queue.length >= queueLimit) {
          overflow = true;
        } else {
          queue.push({
            vimId: c.vimId,
            vimName: c.vimName,
            previousStatus: statusToProto(c.from),
            status: statusToProto(c.to),
            actionId: c.actionId,
            changedAt: new Date(c.changedAt),
            eventId: c.eventId,
          });
        }
        wake?.();
      });
      const onAbort = () => wake?.();
      context.signal.addEventListener('abort', onAbort);
      try {
        await hub.ready();
        if (request.sendInitial) {
          const where: Record<string, unknown> = { deletedAt: null };
          if (filter.size > 0) where.id = { $in: [...filter] };
          const rows = await fork().find(VimSchema, where as never, { orderBy: { createdAt: 'asc', id: 'asc' } });
          for (const r of rows) {
            yield {
              vimId: r.id,
              vimName: r.name,
              previousStatus: statusToProto(r.status),
              status: statusToProto(r.status),
              actionId: r.actionId,
              changedAt: r.statusChangedAt,
              eventId: 0,
            };
          }
        }
        while (!context.signal.aborted) {
          while (queue.length > 0) yield queue.shift()!;
          if (overflow) {
            throw new ResourceExhaustedError(`watcher fell more than ${queueLimit} changes behind; reconnect with send_initial`);
          }
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
      } finally {
        unsubscribe();
        context.signal.removeEventListener('abort', onAbort);
      }
    },
  };
}
