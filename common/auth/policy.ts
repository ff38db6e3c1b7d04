// One policy table for every method of every service, the Doctor HTTP
// endpoint, health and reflection. A rule lists grants; a call is allowed when
// the caller holds any of them. Grants:
//   anyone         no credential needed (health, reflection)
//   authenticated  any valid credential
//   <role>         admin, member, reader, monitor, service:<role> — member and
//                  reader here only say "in some project": the service then checks
//                  the resource's project (a VIM's owner, an alarm's project)
//   identity:<id>  one principal by name (a SPIFFE id, token:<name>, keystone:<user>)
// The defaults follow Tacker's 2024.1 policies (admin, member, reader,
// project-scoped); a YAML file (VIMMON_POLICY_FILE) overrides rules by name.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import type { Principal } from './principal.js';

export type Grant = string;

export interface Policy {
  /** The grants of a rule; undefined when the table has no such rule (refused). */
  grants(rule: string): readonly Grant[] | undefined;
  /** Whether the rule lets anyone in, credential or not. */
  isOpen(rule: string): boolean;
  allows(principal: Principal, rule: string): boolean;
  /** Every rule with its grants, for the README and tests. */
  table(): ReadonlyMap<string, readonly Grant[]>;
}

const vim = 'vimmon.tacker.v1.VimService';
const executor = 'vimmon.executor.v1.ExecutorService';
const conductor = 'vimmon.conductor.v1.VimMonitorAction2Conductor';
const inspector = 'vimmon.inspector.v1.InspectorService';

export const defaultPolicy: ReadonlyArray<[string, Grant[]]> = [
  // VIMs: writes by admin or a member of the owner project; reads by its readers.
  [`${vim}/RegisterVim`, ['admin', 'member']],
  [`${vim}/UpdateVim`, ['admin', 'member']],
  [`${vim}/DeregisterVim`, ['admin', 'member']],
  [`${vim}/GetVim`, ['admin', 'reader']],
  [`${vim}/ListVims`, ['admin', 'reader']],
  [`${vim}/WatchVims`, ['admin', 'reader']],
  [`${vim}/ListVimAudit`, ['admin', 'reader']],
  [`${vim}/ListVimEvents`, ['admin', 'reader']],
  // Actions are started and stopped by the Tacker server alone; admins may look.
  [`${executor}/StartAction`, ['service:server']],
  [`${executor}/StopAction`, ['service:server']],
  [`${executor}/ListActions`, ['service:server', 'admin']],
  [`${executor}/WatchActions`, ['service:server', 'admin']],
  // Only an executor reports monitor results.
  [`${conductor}/UpdateVim`, ['service:executor']],
  // Faults come from monitors; alarms go to readers of their project, host-level ones to admins.
  [`${inspector}/ReportEvents`, ['monitor']],
  [`${inspector}/SubscribeAlarms`, ['admin', 'reader']],
  [`${inspector}/ListAlarms`, ['admin', 'reader']],
  [`${inspector}/ListFaultProfiles`, ['admin']],
  [`${inspector}/GetFaultProfile`, ['admin']],
  [`${inspector}/GetStatus`, ['admin']],
  [`${inspector}/ListHostsDown`, ['admin']],
  // A host's VMs: admins all; readers those of their projects, and the host's state only through one of them.
  [`${inspector}/ListAffectedInstances`, ['admin', 'reader']],
  // Maintenance turns a host's fault management off: admins only, on gRPC and Doctor's HTTP alike.
  [`${inspector}/SetHostMaintenance`, ['admin']],
  [`${inspector}/ListHostsInMaintenance`, ['admin']],
  ['http:PUT /events', ['monitor']],
  ['http:POST /events', ['monitor']],
  ['http:POST /maintenance', ['admin']],
  // Every role's Prometheus endpoint (GET /metrics): global figures and VIM names of every project,
  // so not a project reader; give Prometheus a token of its own by identity (README: Metrics).
  ['metrics', ['admin', 'monitor']],
  // Open, so that grpcurl list and load balancers' health checks work without credentials.
  ['grpc.health.v1.Health/*', ['anyone']],
  ['grpc.reflection.v1.ServerReflection/*', ['anyone']],
  ['grpc.reflection.v1alpha.ServerReflection/*', ['anyone']],
];

const grantPattern =
  /^(anyone|authenticated|admin|member|reader|monitor|service:(server|conductor|executor|inspector|monitor)|identity:\S{1,2048})$/;

/** The rule name of a gRPC method path ("/pkg.Service/Method"). */
export function ruleOfMethod(path: string): string {
  return path.replace(/^\//, '');
}

export function createPolicy(overrides: ReadonlyArray<[string, Grant[]]> = []): Policy {
  const rules = new Map<string, readonly Grant[]>(defaultPolicy);
  for (const [rule, grants] of overrides) rules.set(rule, grants);
  const lookup = (rule: string) => rules.get(rule) ?? rules.get(rule.replace(/\/[^/]*$/, '/*'));
  return {
    grants: lookup,
    isOpen: (rule) => lookup(rule)?.includes('anyone') ?? false,
    allows(principal, rule) {
      const grants = lookup(rule);
      if (!grants) return false;
      return grants.some((g) => {
        if (g === 'anyone') return true;
        if (principal.kind === 'anonymous') return false;
        if (g === 'authenticated') return true;
        if (g.startsWith('identity:')) return principal.name === g.slice('identity:'.length);
        return principal.roles.has(g);
      });
    },
    table: () => rules,
  };
}

/** Overrides from a YAML mapping of rule → grant or list of grants; every error names the rule. */
export function parsePolicyFile(text: string, source: string): Array<[string, Grant[]]> {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new Error(`${source}: not YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return [];
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new Error(`${source}: expected a mapping of rule names to grants`);
  const known = new Set(defaultPolicy.map(([r]) => r));
  return Object.entries(doc as Record<string, unknown>).map(([rule, value]) => {
    if (!known.has(rule))
      throw new Error(`${source}: unknown rule ${JSON.stringify(rule)} (rules: the method paths of README's policy table)`);
    const grants = typeof value === 'string' ? [value] : value;
    if (!Array.isArray(grants) || grants.length === 0)
      throw new Error(`${source}: ${rule}: expected a grant or a non-empty list of grants`);
    for (const g of grants) {
      if (typeof g !== 'string' || !grantPattern.test(g)) throw new Error(`${source}: ${rule}: unknown grant ${JSON.stringify(g)}`);
    }
    return [rule, grants as Grant[]];
  });
}

export function loadPolicy(file: string | undefined): Policy {
  if (!file) return createPolicy();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`VIMMON_POLICY_FILE: cannot read ${file}: ${(err as Error).message}`);
  }
  return createPolicy(parsePolicyFile(text, `VIMMON_POLICY_FILE ${file}`));
}
