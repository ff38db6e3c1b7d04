// Static bearer tokens for sites without Keystone, from a YAML file of entries
//   - name: dashboard          # for logs and the audit trail
//     sha256: 9f86d081…         # hex SHA-256 of the token; the token itself is never stored
//     roles: [reader]           # admin, member, reader, monitor, service:<role>
//     projects: [p-1234]        # where member/reader hold
// `vimmon token new NAME --roles … --projects …` prints a fresh token and its entry.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { serviceRoles, withImpliedRoles, type Principal } from './principal.js';

export interface StaticTokenEntry {
  name: string;
  sha256: string;
  roles: string[];
  projects: string[];
}

export interface StaticTokens {
  /** The principal of a presented token, or undefined when no entry matches. */
  lookup(token: string): Principal | undefined;
  readonly size: number;
}

const knownRoles = new Set(['admin', 'member', 'reader', 'monitor', ...serviceRoles.map((r) => `service:${r}`)]);

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** A new random token (256 bits, base64url) with a recognisable prefix. */
export function newToken(): string {
  return `vmt_${randomBytes(32).toString('base64url')}`;
}

/** Validates entries; every error names the file, the entry and the field. */
export function parseStaticTokens(text: string, source: string): StaticTokenEntry[] {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new Error(`${source}: not YAML: ${(err as Error).message}`);
  }
  const list = Array.isArray(doc) ? doc : (doc as { tokens?: unknown } | null)?.tokens;
  if (!Array.isArray(list)) throw new Error(`${source}: expected a list of tokens (or "tokens:" with a list)`);
  const names = new Set<string>();
  const hashes = new Set<string>();
  return list.map((raw, i) => {
    const at = `${source}: tokens[${i}]`;
    if (typeof raw !== 'object' || raw === null) throw new Error(`${at}: expected an entry with name, sha256, roles and projects`);
    const e = raw as Record<string, unknown>;
    if (typeof e.name !== 'string' || !/^[A-Za-z0-9._@-]{1,128}$/.test(e.name))
      throw new Error(`${at}.name: 1 to 128 letters, digits or ._@-`);
    if (names.has(e.name)) throw new Error(`${at}.name: ${e.name} appears twice`);
    names.add(e.name);
    if (typeof e.sha256 !== 'string' || !/^[0-9a-fA-F]{64}$/.test(e.sha256))
      throw new Error(`${at}.sha256: the hex SHA-256 of the token (64 hex digits)`);
    const sha256 = e.sha256.toLowerCase();
    if (hashes.has(sha256)) throw new Error(`${at}.sha256: the same token as another entry`);
    hashes.add(sha256);
    const roles = stringList(e.roles, `${at}.roles`);
    for (const r of roles)
      if (!knownRoles.has(r)) throw new Error(`${at}.roles: unknown role ${JSON.stringify(r)} (known: ${[...knownRoles].join(', ')})`);
    const projects = stringList(e.projects ?? [], `${at}.projects`);
    if (projects.length > 100) throw new Error(`${at}.projects: at most 100 projects a token`);
    if ((roles.includes('member') || roles.includes('reader')) && projects.length === 0 && !roles.includes('admin')) {
      throw new Error(`${at}.projects: member and reader hold in projects; list at least one`);
    }
    return { name: e.name, sha256, roles, projects };
  });
}

function stringList(v: unknown, field: string): string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x.length === 0 || x.length > 255)) {
    throw new Error(`${field}: expected a list of non-empty strings`);
  }
  return v as string[];
}

export function createStaticTokens(entries: StaticTokenEntry[]): StaticTokens {
  const byHash = new Map<string, Principal>();
  for (const e of entries) {
    byHash.set(e.sha256, { kind: 'token', name: `token:${e.name}`, roles: withImpliedRoles(e.roles), projects: e.projects });
  }
  return {
    size: byHash.size,
    // A lookup by hash: the comparison is on SHA-256 digests, so its timing says nothing about the token.
    lookup: (token) => byHash.get(hashToken(token)),
  };
}

export function loadStaticTokens(file: string): StaticTokens {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`VIMMON_AUTH_TOKENS_FILE: cannot read ${file}: ${(err as Error).message}`);
  }
  return createStaticTokens(parseStaticTokens(text, `VIMMON_AUTH_TOKENS_FILE ${file}`));
}
