// Authentication and authorization at the edge of every role, gRPC and HTTP
// alike. A call's credential is, in this order: a bearer token (metadata
// `authorization: Bearer …`, or `x-auth-token`; on HTTP the same headers) —
// a token of this process's own roles, a static token, or a Keystone token —
// else the client certificate's SPIFFE id (verified by TLS against the mesh
// CA), else none. In development mode (authentication off: loopback only, or
// VIMMON_INSECURE) every caller is `development` and may do everything.
import { randomBytes } from 'node:crypto';
import { Metadata } from 'nice-grpc';
import { PermissionDeniedError, UnauthenticatedError } from '../errors.js';
import type { KeystoneTokenValidator } from './keystone-tokens.js';
import { createPolicy, type Policy } from './policy.js';
import { anonymous, development, withImpliedRoles, type Principal, type ServiceRole } from './principal.js';
import { principalOfSpiffeId } from './spiffe.js';
import type { StaticTokens } from './static-tokens.js';
import { hashToken } from './static-tokens.js';

export interface CallCredentials {
  /** `authorization` metadata / header. */
  authorization?: string;
  /** `x-auth-token` metadata / header (OpenStack's). */
  authToken?: string;
  /** What TLS verified of the client certificate: its SPIFFE id, or `subject:<CN>` for one without. */
  peerIdentity?: string;
}

export interface AuthOptions {
  /** 'development': authentication off, every caller may do everything. */
  mode: 'development' | 'enforced';
  /** SPIFFE trust domain of the mesh's certificates. */
  trustDomain?: string;
  staticTokens?: StaticTokens;
  keystone?: KeystoneTokenValidator;
  policy?: Policy;
  /** Server streams one principal may hold open on one role at once. Default 1,000. */
  streamsPerPrincipal?: number;
}

export interface Auth {
  readonly mode: 'development' | 'enforced';
  readonly policy: Policy;
  readonly streamsPerPrincipal: number;
  /** The caller of a call to `rule`, authorized; throws UnauthenticatedError or PermissionDeniedError. */
  authorize(rule: string, credentials: CallCredentials): Promise<Principal>;
  /**
   * The credential a role of this process presents on its calls to other roles
   * when it has no certificate identity nor a configured service token: a token
   * known to this process only (vimmon all), undefined in development mode.
   */
  internalToken(role: ServiceRole): string | undefined;
}

/** Metadata carrying a bearer token, for nice-grpc clients' default call options. */
export function bearerMetadata(token: string | undefined): Metadata | undefined {
  return token ? Metadata({ authorization: `Bearer ${token}` }) : undefined;
}

function tokenOf(c: CallCredentials): string | undefined {
  const header = c.authorization?.trim();
  if (header) {
    const m = /^Bearer\s+(\S{1,8192})$/i.exec(header);
    // A malformed Authorization header is a bad credential, not an absent one.
    return m ? m[1]! : '\0malformed';
  }
  const x = c.authToken?.trim();
  return x ? x.slice(0, 8193) : undefined;
}

export function createAuth(options: AuthOptions): Auth {
  const policy = options.policy ?? createPolicy();
  const trustDomain = options.trustDomain ?? 'vimmon.local';
  const internal = new Map<string, Principal>();
  const internalByRole = new Map<ServiceRole, string>();

  async function authenticate(c: CallCredentials): Promise<Principal> {
    const token = tokenOf(c);
    if (token !== undefined) {
      const p = internal.get(hashToken(token)) ?? options.staticTokens?.lookup(token) ?? (await options.keystone?.validate(token));
      if (!p) throw new UnauthenticatedError('the token is not valid (unknown, expired or revoked)');
      return p;
    }
    if (c.peerIdentity?.startsWith('spiffe://')) return principalOfSpiffeId(c.peerIdentity, trustDomain);
    if (c.peerIdentity) return { kind: 'certificate', name: c.peerIdentity, roles: new Set(), projects: [] };
    return anonymous;
  }

  return {
    mode: options.mode,
    policy,
    streamsPerPrincipal: options.streamsPerPrincipal ?? 1_000,
    async authorize(rule, credentials) {
      if (options.mode === 'development') return development;
      // Open rules do not look at credentials: a stale token must not break a health check.
      if (policy.isOpen(rule)) return anonymous;
      const principal = await authenticate(credentials);
      if (policy.allows(principal, rule)) return principal;
      if (principal.kind === 'anonymous') throw new UnauthenticatedError('credentials required: a bearer token or a client certificate');
      throw new PermissionDeniedError(`${principal.name} may not call ${rule}`);
    },
    internalToken(role) {
      if (options.mode === 'development') return undefined;
      let token = internalByRole.get(role);
      if (!token) {
        token = `vmi_${randomBytes(32).toString('base64url')}`;
        internalByRole.set(role, token);
        const roles = [`service:${role}`, ...(role === 'monitor' ? ['monitor'] : [])];
        internal.set(hashToken(token), { kind: 'internal', name: `internal:${role}`, roles: withImpliedRoles(roles), projects: [] });
      }
      return token;
    },
  };
}
