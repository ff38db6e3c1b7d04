// The faults the suite injects, one at a time, and how long the mesh takes to
// monitor every VIM again after each: from injection until every live VIM has
// an accepted report newer than the injection (and, for the same moment, from
// the heal: the restart, the database or broker started again, the partition
// or the drop rule removed).
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { ChaosMesh, RoleProcess } from './mesh.js';
import type { ChaosNetwork } from './network.js';
import type { ChaosPostgres } from './postgres.js';
import type { ChaosRabbitmq } from './rabbitmq.js';
import { countReportedSince } from './recorders.js';

export type FaultKind =
  | 'kill-server'
  | 'kill-conductor'
  | 'kill-executor'
  | 'kill-inspector'
  | 'postgres-stop-fast'
  | 'postgres-stop-immediate'
  | 'rabbitmq-stop'
  | 'executor-partition'
  | 'target-packets-dropped';

export interface Fault {
  kind: FaultKind;
  /** What exactly, e.g. the role process killed. */
  target: string;
  inject(): Promise<void>;
  /** How long the fault stays before heal. */
  holdMs: number;
  heal(): Promise<void>;
  /** An executor's address: the VIMs it runs at injection are counted (vimsOnTarget). */
  executorAddress?: string;
  /** Besides the VIMs' reports, what must hold again after the heal (timed as roleRecoveryMs). */
  recovered?: () => Promise<boolean>;
}

export interface FaultOutcome {
  kind: FaultKind;
  target: string;
  injectedAtMs: number;
  /** When the heal step began (a restart, a start, a rule removed). */
  healedAtMs: number;
  /** How long the heal step took: a role's start until SERVING, PostgreSQL's or RabbitMQ's start. */
  healTookMs?: number;
  /** Injection → every live VIM has a report newer than the injection; undefined: not within the limit. */
  restorationMs: number | undefined;
  /** Heal started → that same moment (0 when restored before the heal). */
  fromHealMs: number | undefined;
  /** Drops only: the dropped VIMs read UNREACHABLE (after the drop), then REACHABLE (after the heal). */
  detectionMs?: number | undefined;
  recoveryMs?: number | undefined;
  /** Faults with a `recovered` check: heal → it holds (e.g. the inspector's RabbitMQ consumer connected again). */
  roleRecoveryMs?: number | undefined;
  /** Executor faults: the live VIMs that executor ran at injection. */
  vimsOnTarget?: number;
  error?: string;
}

export interface FaultSetting {
  mesh: ChaosMesh;
  postgres: ChaosPostgres;
  rabbitmq: ChaosRabbitmq | undefined;
  network: ChaosNetwork;
  /** Port of the target whose packets get dropped, and the VIMs on it. */
  dropPort: number;
  dropVimIds: string[];
  /** Told at injection and at heal: the suite sends a host fault to the inspector, so alarms flow. */
  onHostEvent: (status: 'down' | 'up') => Promise<void>;
}

const killFault = (kind: FaultKind, role: RoleProcess): Fault => ({
  kind,
  target: role.name,
  executorAddress: role.kind === 'executor' ? role.address : undefined,
  inject: () => role.kill(),
  holdMs: 1_000,
  heal: () => role.start(),
});

/** One cycle of faults, in priority order (a short run does the first ones); `cycle` picks which conductor, executor, stop mode. */
export function faultCycle(s: FaultSetting, cycle: number): Fault[] {
  const faults: Fault[] = [
    killFault('kill-server', s.mesh.server),
    killFault('kill-conductor', s.mesh.conductors[cycle % 2]!),
    // The namespace's executor first: a partition later in the cycle moves its VIMs to the other one, which the
    // next cycle's kill then spreads again; the other order would kill an executor left with almost no VIMs.
    killFault('kill-executor', s.mesh.executors[(cycle + 1) % 2]!),
    killFault('kill-inspector', s.mesh.inspector),
    {
      kind: cycle % 2 === 0 ? 'postgres-stop-fast' : 'postgres-stop-immediate',
      target: 'postgresql',
      inject: () => s.postgres.stop(cycle % 2 === 0 ? 'fast' : 'immediate'),
      holdMs: 4_000,
      heal: () => s.postgres.start(),
    },
    {
      kind: 'executor-partition',
      target: s.mesh.executors[1].name,
      executorAddress: s.mesh.executors[1].address,
      inject: () => s.network.partition(),
      // Longer than a VIM's stale limit, so its VIMs move to the other executor.
      holdMs: 12_000,
      heal: () => s.network.heal(),
    },
    {
      kind: 'target-packets-dropped',
      target: `target port ${s.dropPort}`,
      inject: () => s.network.dropTarget(s.dropPort),
      holdMs: 8_000,
      heal: () => s.network.restoreTargets(),
    },
  ];
  const rabbitmq = s.rabbitmq;
  if (rabbitmq)
    faults.push({
      kind: 'rabbitmq-stop',
      target: 'rabbitmq node',
      inject: () => rabbitmq.stop(),
      holdMs: 2_000,
      heal: () => rabbitmq.start(),
      // VIM monitoring does not use RabbitMQ: what must come back is the inspector's Nova notifications consumer.
      recovered: async () => /^vimmon_rabbitmq_connected 1$/m.test(await metricsText(s.mesh.inspectorMetrics)),
    });
  return faults;
}

async function metricsText(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
  return res.text();
}

async function statuses(pool: pg.Pool, ids: string[]): Promise<string[]> {
  const { rows } = await pool.query(`select status from vim where id = any($1::uuid[])`, [ids]);
  return rows.map((r) => r.status as string);
}

/** Polls until `check` holds (database errors count as not yet); the time it first held, or undefined after the limit. */
async function firstTime(check: () => Promise<boolean>, limitAtMs: number, pollMs: number): Promise<number | undefined> {
  while (Date.now() < limitAtMs) {
    if (await check().catch(() => false)) return Date.now();
    await sleep(pollMs);
  }
  return undefined;
}

export async function runFault(
  fault: Fault,
  s: FaultSetting,
  pool: pg.Pool,
  restoreLimitMs: number,
  log: (line: string) => void,
): Promise<FaultOutcome> {
  const limit = () => Date.now() + restoreLimitMs;
  const vimsOnTarget = fault.executorAddress
    ? await pool
        .query(`select count(*)::int as n from vim where deleted_at is null and executor = $1`, [fault.executorAddress])
        .then((r) => r.rows[0].n as number)
        .catch(() => undefined)
    : undefined;
  // The host event goes first: the inspector may be what is being killed.
  await s.onHostEvent('down');
  const injectedAtMs = Date.now();
  const outcome: FaultOutcome = {
    kind: fault.kind,
    target: fault.target,
    injectedAtMs,
    healedAtMs: 0,
    restorationMs: undefined,
    fromHealMs: undefined,
  };
  if (vimsOnTarget !== undefined) outcome.vimsOnTarget = vimsOnTarget;
  await fault.inject();
  const restored = firstTime(
    async () => {
      const c = await countReportedSince(pool, injectedAtMs);
      return c.live > 0 && c.fresh === c.live;
    },
    injectedAtMs + fault.holdMs + restoreLimitMs,
    200,
  );
  const dropped = fault.kind === 'target-packets-dropped';
  const detected = dropped
    ? firstTime(async () => (await statuses(pool, s.dropVimIds)).every((st) => st === 'UNREACHABLE'), limit(), 50)
    : undefined;
  try {
    await sleep(fault.holdMs);
    if (dropped) await detected;
    outcome.healedAtMs = Date.now();
    await fault.heal();
    outcome.healTookMs = Date.now() - outcome.healedAtMs;
  } catch (err) {
    outcome.error = String(err);
    log(`${fault.kind} ${fault.target}: ${outcome.error}`);
  }
  const recovered = dropped
    ? firstTime(async () => (await statuses(pool, s.dropVimIds)).every((st) => st === 'REACHABLE'), limit(), 50)
    : undefined;
  const roleRecovered = fault.recovered ? firstTime(fault.recovered, limit(), 100) : undefined;
  // After the pollers start: its retries must not delay what they time.
  await s.onHostEvent('up');
  const at = await restored;
  if (at !== undefined) {
    outcome.restorationMs = at - injectedAtMs;
    outcome.fromHealMs = Math.max(0, at - outcome.healedAtMs);
  }
  if (roleRecovered) {
    const r = await roleRecovered;
    outcome.roleRecoveryMs = r === undefined ? undefined : r - outcome.healedAtMs;
  }
  if (dropped) {
    const d = await detected;
    const r = await recovered;
    outcome.detectionMs = d === undefined ? undefined : d - injectedAtMs;
    outcome.recoveryMs = r === undefined ? undefined : r - outcome.healedAtMs;
  }
  return outcome;
}
