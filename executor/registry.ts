// The actions running in this executor, by action id and by VIM. The
// registry ends an action through its stop(): StopAction with STOPPED, the
// executor's root signal (shutdown) with SHUTDOWN for every action at once.
import { AlreadyExistsError, UnavailableError } from '../common/errors.js';
import type { BackoffOptions } from '../common/delay.js';
import type { Logger } from '../common/logger.js';
import type { MonitorSettings, ProbeName } from '../common/monitor-policy.js';
import {
  createActionCounters,
  MonitorAction,
  type ActionCounters,
  type ActionDeps,
  type ActionSpec,
  type StopReasonName,
} from './action.js';
import type { ActionEventHub } from './action-events.js';
import { probes as defaultProbes, type Probe } from './probe.js';
import type { Reporter } from './report.js';
import { firstIndexAbove } from '../common/sorted-index.js';

export interface ActionRegistryOptions {
  logger: Logger;
  reporter: Reporter;
  backoff: BackoffOptions;
  events: ActionEventHub;
  /** The executor's root signal. */
  signal: AbortSignal;
  probes?: Readonly<Record<ProbeName, Probe>>;
}

export interface StartResult {
  action: MonitorAction;
  alreadyRunning: boolean;
}

export class ActionRegistry {
  readonly counters: ActionCounters = createActionCounters();
  private readonly byId = new Map<string, MonitorAction>();
  // byId's keys in order, for ListActions pages; dropped at every change, sorted again when asked.
  private sortedIds: string[] | undefined;
  // Arrays rather than Sets: almost every VIM has exactly one action.
  private readonly byVim = new Map<string, MonitorAction[]>();
  // Every action until it has ended (also after it left byId).
  private readonly running = new Set<MonitorAction>();
  private readonly logger: Logger;
  // One set of dependencies per probe kind, shared by every action of that kind.
  private readonly deps = new Map<ProbeName, ActionDeps>();
  // Equal monitor settings are one object shared by the actions that run
  // them (most VIMs run the default policy), counted so that it goes with
  // the last of them.
  private readonly settings = new Map<string, { settings: MonitorSettings; actions: number }>();

  constructor(private readonly options: ActionRegistryOptions) {
    this.logger = options.logger;
    const probes = options.probes ?? defaultProbes;
    const onEnd = (action: MonitorAction, reason: StopReasonName) => this.ended(action, reason);
    for (const [name, probe] of Object.entries(probes) as Array<[ProbeName, Probe]>) {
      this.deps.set(name, {
        logger: this.logger,
        probe,
        reporter: options.reporter,
        backoff: options.backoff,
        observer: options.events,
        counters: this.counters,
        onEnd,
      });
    }
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
      const difference = differenceOf(existing.spec, spec);
      if (difference) throw new AlreadyExistsError(`action_id ${spec.actionId} already runs here with another ${difference}`);
      return { action: existing, alreadyRunning: true };
    }
    const others = this.byVim.get(spec.vimId);
    if (others && others.length > 0) {
      // Allowed: the conductor's fencing accepts only the VIM's current action,
      // and the other one exits at its next report. Worth a line in the log.
      this.logger.warn('another action already runs here for this VIM', {
        vimId: spec.vimId,
        actionId: spec.actionId,
        otherActionIds: others.map((a) => a.spec.actionId),
      });
    }
    const action = new MonitorAction({ ...spec, settings: this.shareSettings(spec.settings) }, this.deps.get(spec.settings.probe)!);
    this.byId.set(spec.actionId, action);
    this.sortedIds = undefined;
    if (others) others.push(action);
    else this.byVim.set(spec.vimId, [action]);
    this.running.add(action);
    this.options.events.started(action);
    void action.run();
    return { action, alreadyRunning: false };
  }

  /** Stops an action; false when none with that id runs here. Resolves once it has ended. */
  async stop(actionId: string): Promise<boolean> {
    const action = this.byId.get(actionId);
    if (!action) return false;
    this.remove(action);
    action.stop('STOPPED');
    await action.run();
    return true;
  }

  /** Running actions of these VIMs, or all when vimIds is undefined. */
  list(vimIds?: ReadonlySet<string>): MonitorAction[] {
    if (!vimIds) return [...this.byId.values()];
    const actions: MonitorAction[] = [];
    for (const vimId of vimIds) {
      for (const action of this.byVim.get(vimId) ?? []) actions.push(action);
    }
    return actions;
  }

  /**
   * Running actions of these VIMs (all when undefined) whose action id sorts
   * after `afterActionId` ('' for every one), in action id order. Read it
   * before the next start or stop.
   */
  *ordered(vimIds?: ReadonlySet<string>, afterActionId = ''): Generator<MonitorAction, void> {
    if (vimIds) {
      const actions = this.list(vimIds).filter((a) => a.spec.actionId > afterActionId);
      yield* actions.sort((a, b) => (a.spec.actionId < b.spec.actionId ? -1 : 1));
      return;
    }
    const ids = (this.sortedIds ??= [...this.byId.keys()].sort());
    for (let i = firstIndexAbove(ids, afterActionId, (id) => id); i < ids.length; i++) {
      const action = this.byId.get(ids[i]!);
      if (action) yield action;
    }
  }

  /** Resolves once every action started so far has ended. */
  async drained(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running].map((a) => a.run()));
  }

  private ended(action: MonitorAction, reason: StopReasonName): void {
    this.remove(action);
    this.running.delete(action);
    this.releaseSettings(action.spec.settings);
    this.options.events.stopped(action, reason);
    this.logger.debug('action ended', { vimId: action.spec.vimId, actionId: action.spec.actionId, reason });
  }

  private shareSettings(settings: MonitorSettings): MonitorSettings {
    const key = JSON.stringify(settings);
    const shared = this.settings.get(key);
    if (shared) {
      shared.actions++;
      return shared.settings;
    }
    this.settings.set(key, { settings, actions: 1 });
    return settings;
  }

  private releaseSettings(settings: MonitorSettings): void {
    const key = JSON.stringify(settings);
    const shared = this.settings.get(key);
    if (shared && --shared.actions === 0) this.settings.delete(key);
  }

  private abortAll(reason: StopReasonName): void {
    for (const action of [...this.byId.values()]) action.stop(reason);
  }

  private remove(action: MonitorAction): void {
    const { actionId, vimId } = action.spec;
    if (this.byId.get(actionId) === action) {
      this.byId.delete(actionId);
      this.sortedIds = undefined;
    }
    const vimActions = this.byVim.get(vimId);
    const i = vimActions?.indexOf(action) ?? -1;
    if (i < 0) return;
    vimActions!.splice(i, 1);
    if (vimActions!.length === 0) this.byVim.delete(vimId);
  }
}

/** The first field in which two specs of one action id differ, if any. */
function differenceOf(a: ActionSpec, b: ActionSpec): string | undefined {
  if (a.vimId !== b.vimId) return `vim_id (${a.vimId})`;
  if (a.authUrl.href !== b.authUrl.href) return 'auth_url';
  if (a.authUrl.trust?.id !== b.authUrl.trust?.id) return 'ssl_ca_cert';
  if (a.authUrl.auth !== b.authUrl.auth && !a.authUrl.auth?.sameAs(b.authUrl.auth)) return 'auth';
  const keys = Object.keys(a.settings) as Array<keyof ActionSpec['settings']>;
  const changed = keys.find((k) => a.settings[k] !== b.settings[k]);
  return changed ? 'monitor policy' : undefined;
}
