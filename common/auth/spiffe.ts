// Service identities from client certificates: exactly one URI SAN of the form
// spiffe://<trust-domain>/vimmon/<role> (the convention of SPIFFE and Istio).
// A certificate is only looked at after grpc-js verified it against the mesh
// CA (getAuthContext() is empty otherwise).
import { serviceRoles, withImpliedRoles, type Principal, type ServiceRole } from './principal.js';

/** The SPIFFE id of a certificate's subjectaltname text ("URI:spiffe://…, DNS:…"), if it has exactly one. */
export function spiffeIdOf(subjectAltName: string | undefined): string | undefined {
  if (!subjectAltName) return undefined;
  // Node escapes commas inside names with quotes; SPIFFE ids have none, so a plain split is safe for them.
  const ids = subjectAltName
    .split(/,\s*/)
    .filter((n) => n.startsWith('URI:spiffe://'))
    .map((n) => n.slice('URI:'.length));
  return ids.length === 1 ? ids[0] : undefined;
}

const idPattern = /^spiffe:\/\/([a-z0-9._-]{1,255})(\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{1,2048})$/;

/** The principal of a verified certificate's SPIFFE id: a vimmon role in our trust domain, or an identity with no role. */
export function principalOfSpiffeId(id: string, trustDomain: string): Principal {
  const m = idPattern.exec(id);
  if (!m || m[1] !== trustDomain) return { kind: 'certificate', name: id, roles: new Set(), projects: [] };
  const role = /^\/vimmon\/([a-z]+)$/.exec(m[2]!)?.[1];
  if (role && (serviceRoles as readonly string[]).includes(role)) {
    const roles = [`service:${role as ServiceRole}`];
    if (role === 'monitor') roles.push('monitor');
    return { kind: 'certificate', name: id, roles: withImpliedRoles(roles), projects: [] };
  }
  return { kind: 'certificate', name: id, roles: new Set(), projects: [] };
}

export function spiffeId(trustDomain: string, role: ServiceRole): string {
  return `spiffe://${trustDomain}/vimmon/${role}`;
}
