// The actions running in this executor, by action id and by VIM. Each action
// runs under an AbortController of its own, a child of the executor's root
// signal: aborting the root (shutdown) aborts every action.
import { AlreadyExistsError, UnavailableError } from '../common/errors.js';
import type { BackoffOptions } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import type { ProbeName } from '../common/monitor-policy.js';
import { createActionCounters, MonitorAction, type ActionCounters, type ActionSpec } from './action.js';
import type { ActionEventHub, StopReasonName } from './action-events.js';
import { probes as defaultProbes, type Probe } from './probe.js';
import type { Reporter } from './report.js';

export interface ActionRegistryOptions {
  logger: Logger;
  reporter: Reporter;
  backoff: BackoffOptions;
  events: ActionEventHub;
  /** The executor's root signal. */
  signal: AbortSignal;
  probes?: Readonly<Record<ProbeName, Probe>>;
}

interface Entry {
  action: MonitorAction;
  controller: AbortController;
  /** Set by whoever aborts the action, before aborting it. */
  stopReason: StopReasonName | undefined;
  done: Promise<void>;
}

export interface StartResult {
  action: MonitorAction;
  alreadyRunning: boolean;
}

export class ActionRegistry {
  readonly counters: ActionCounters = createActionCounters();
  private readonly byId = new Map<string, Entry>();
  // Arrays rather than Sets: almost every VIM has exactly one action.
  private readonly byVim = new Map<string, Entry[]>();
  // Every action's run, until it has ended (also after it left byId).
  private readonly running = new Set<Promise<void>>();
  private readonly logger: Logger;
  private readonly probes: Readonly<Record<ProbeName, Probe>>;

  constructor(private readonly options: ActionRegistryOptions) {
    this.logger = options.logger;
    this.probes = options.probes ?? defaultProbes;
    // One listener on the root for all actions, rather than one per action:
    // EventTarget walks its listener list on every add and remove, which
    // would make starting and stopping 10,000 actions quadratic.
    options.signal.addEventListener('abort', () => this.abortAll('SHUTDOWN'), { once: true });
  }

  get size(): number {
    return this.byId.size;
  }

  /** Starts an action, or returns the running one with that id (idempotent). */
  start(spec: ActionSpec): StartResult {
    if (this.options.signal.aborted) throw new UnavailableError('executor is shutting down');
    const existing = this.byId.get(spec.actionId);
    if (existing) {
      const difference = differenceOf(existing.action.spec, spec);
      if (difference) throw new AlreadyExistsError(`action_id ${spec.actionId} already runs here with another ${difference}`);
      return { action: existing.action, alreadyRunning: true };
    }
    const others = this.byVim.get(spec.vimId);
    if (others && others.length > 0) {
      // Allowed: the conductor's fencing accepts only the VIM's current action,
      // and the other one exits at its next report. Worth a line in the log.
      this.logger.warn('another action already runs here for this VIM', {
        vimId: spec.vimId,
        actionId: spec.actionId,
        otherActionIds: others.map((e) => e.action.spec.actionId),
      });
    }
    const { events } = this.options;
    const action = new MonitorAction(spec, {
      logger: this.logger,
      probe: this.probes[spec.settings.probe],
      reporter: this.options.reporter,
      backoff: this.options.backoff,
      observer: events,
      counters: this.counters,
    });
    const entry: Entry = { action, controller: new AbortController(), stopReason: undefined, done: Promise.resolve() };
    this.byId.set(spec.actionId, entry);
    if (others) others.push(entry);
    else this.byVim.set(spec.vimId, [entry]);
    events.started(action);
    const done = action.run(entry.controller.signal).then(
      (end) => (end === 'bad-action' ? 'BAD_ACTION' : (entry.stopReason ?? 'STOPPED')),
      (err: unknown) => {
        this.logger.error('action failed', { vimId: spec.vimId, actionId: spec.actionId, err });
        return entry.stopReason ?? 'STOPPED';
      },
    ).then((reason: StopReasonName) => {
      this.remove(entry);
      this.running.delete(done);
      events.stopped(action, reason);
      this.logger.debug('action ended', { vimId: spec.vimId, actionId: spec.actionId, reason });
    });
    entry.done = done;
    this.running.add(done);
    return { action, alreadyRunning: false };
  }

  /** Stops an action; false when none with that id runs here. Resolves once it has ended. */
  async stop(actionId: string): Promise<boolean> {
    const entry = this.byId.get(actionId);
    if (!entry) return false;
    entry.stopReason ??= 'STOPPED';
    this.remove(entry);
    entry.controller.abort();
    await entry.done;
    return true;
  }

  /** Running actions of these VIMs, or all when vimIds is undefined. */
  list(vimIds?: ReadonlySet<string>): MonitorAction[] {
    if (!vimIds) return [...this.byId.values()].map((e) => e.action);
    const actions: MonitorAction[] = [];
    for (const vimId of vimIds) {
      for (const entry of this.byVim.get(vimId) ?? []) actions.push(entry.action);
    }
    return actions;
  }

  /** Resolves once every action started so far has ended. */
  async drained(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running]);
  }

  private abortAll(reason: StopReasonName): void {
    for (const entry of [...this.byId.values()]) {
      entry.stopReason ??= reason;
      entry.controller.abort();
    }
  }

  private remove(entry: Entry): void {
    const { actionId, vimId } = entry.action.spec;
    if (this.byId.get(actionId) === entry) this.byId.delete(actionId);
    const vimEntries = this.byVim.get(vimId);
    const i = vimEntries?.indexOf(entry) ?? -1;
    if (i < 0) return;
    vimEntries!.splice(i, 1);
    if (vimEntries!.length === 0) this.byVim.delete(vimId);
  }
}

/** The first field in which two specs of one action id differ, if any. */
function differenceOf(a: ActionSpec, b: ActionSpec): string | undefined {
  if (a.vimId !== b.vimId) return `vim_id (${a.vimId})`;
  if (a.authUrl.href !== b.authUrl.href) return 'auth_url';
  const keys = Object.keys(a.settings) as Array<keyof ActionSpec['settings']>;
  const changed = keys.find((k) => a.settings[k] !== b.settings[k]);
  return changed ? 'monitor policy' : undefined;
}
