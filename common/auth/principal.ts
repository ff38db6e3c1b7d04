// Who is calling. Every call is served on behalf of one principal, decided at
// the edge (common/auth/authenticator.ts) from a certificate or a token, and
// authorized against the policy table (common/auth/policy.ts) before the
// service sees it. Services read it with callerOf(context) for the checks that
// depend on the resource (a VIM's owner project, an alarm's project).
import type { CallContext } from 'nice-grpc';

/** The roles a service identity carries: `service:<role>`. */
export const serviceRoles = ['server', 'conductor', 'executor', 'inspector', 'monitor'] as const;
export type ServiceRole = (typeof serviceRoles)[number];

export type PrincipalKind =
  /** No credential presented (only rules open to anyone let it through). */
  | 'anonymous'
  /** Authentication is off (loopback development mode): every caller may do everything. */
  | 'development'
  /** A client certificate with a SPIFFE id. */
  | 'certificate'
  /** A static token from the tokens file. */
  | 'token'
  /** A Keystone token. */
  | 'keystone'
  /** A role of this same process calling another (vimmon all). */
  | 'internal';

export interface Principal {
  kind: PrincipalKind;
  /** For logs and the audit trail: a SPIFFE id, "token:<name>", "keystone:<user>", "anonymous", "development". */
  name: string;
  /**
   * Roles, implied ones included (admin ⊃ member ⊃ reader, as Keystone's default
   * implied roles): `admin` holds everywhere; `member` and `reader` hold in
   * `projects` only; `service:<role>` and `monitor` hold everywhere.
   */
  roles: ReadonlySet<string>;
  /** Projects where member/reader hold (Keystone: the token's one project). */
  projects: readonly string[];
}

const implied: Record<string, string[]> = { admin: ['member', 'reader'], member: ['reader'] };

/** The roles given plus the ones they imply. */
export function withImpliedRoles(roles: Iterable<string>): Set<string> {
  const out = new Set<string>();
  const add = (r: string) => {
    if (out.has(r)) return;
    out.add(r);
    for (const i of implied[r] ?? []) add(i);
  };
  for (const r of roles) add(r);
  return out;
}

export const anonymous: Principal = { kind: 'anonymous', name: 'anonymous', roles: new Set(), projects: [] };

/** Authentication off: loopback development mode. */
export const development: Principal = {
  kind: 'development',
  name: 'development',
  roles: withImpliedRoles(['admin', 'monitor', ...serviceRoles.map((r) => `service:${r}`)]),
  projects: [],
};

export function isAdmin(p: Principal): boolean {
  return p.roles.has('admin');
}

/** Whether p holds `role` (member or reader) in `project`; admin holds everywhere. */
export function holdsIn(p: Principal, role: 'member' | 'reader', project: string): boolean {
  if (isAdmin(p)) return true;
  return p.roles.has(role) && project !== '' && p.projects.includes(project);
}

/** The projects whose resources p may read; undefined: all (admin). */
export function readableProjects(p: Principal): ReadonlySet<string> | undefined {
  if (isAdmin(p)) return undefined;
  return p.roles.has('reader') ? new Set(p.projects) : new Set();
}

const callers = new WeakMap<object, Principal>();

/** Set by the gRPC server's middleware on the context it hands the service. */
export function attachCaller(context: CallContext, principal: Principal): void {
  callers.set(context, principal);
}

/** The principal of a call: the middleware attaches one to every call; anything else counts as anonymous. */
export function callerOf(context: CallContext | undefined): Principal {
  return (context && callers.get(context)) ?? anonymous;
}
