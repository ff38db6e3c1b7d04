// Where the inspector finds its OpenStack credentials: OS_* variables as in an
// openrc file, or OS_CLOUD naming an entry of clouds.yaml, the two ways every
// OpenStack client accepts. Absence is reported, never thrown: the inspector
// runs without Nova and says what it lacks.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export interface OpenStackConfig {
  /** Keystone URL, with or without the trailing /v3. */
  authUrl: string;
  username: string;
  password: string;
  /** Empty when projectId scopes the token instead. */
  projectName: string;
  /** Empty when userDomainId is given instead. */
  userDomainName: string;
  /** Empty when projectDomainId is given instead. */
  projectDomainName: string;
  /** Catalog interface: public, internal or admin (default public). */
  interface: string;
  regionName?: string;
  projectId?: string;
  userDomainId?: string;
  projectDomainId?: string;
  /** Where the values came from, for the start-up log: 'env' or the clouds.yaml path. */
  source?: string;
}

export interface LoadOpenStackConfigOptions {
  /** Folder searched first for clouds.yaml (default process.cwd()). */
  cwd?: string;
  /** Replaces the standard search list (for tests). */
  cloudsYamlPaths?: string[];
}

export type OpenStackConfigResult = { config: OpenStackConfig } | { missing: string[] };

/**
 * From OS_* env vars, or OS_CLOUD + clouds.yaml (OS_CLIENT_CONFIG_FILE, ./clouds.yaml,
 * ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml; first file found, as
 * openstacksdk does; a secure.yaml beside it is merged). With OS_CLOUD, OS_* variables
 * fill only what the cloud entry leaves out. Returns { missing } naming what is absent.
 */
export function loadOpenStackConfig(env: NodeJS.ProcessEnv, options: LoadOpenStackConfigOptions = {}): OpenStackConfigResult {
  const cloud = nonEmpty(env.OS_CLOUD);
  if (cloud) return fromCloudsYaml(cloud, env, options);
  return fromValues(envValues(env), 'env', envNames);
}

/** What an OS_* name or clouds.yaml key provides; names say where a missing one is looked for. */
interface Values {
  authUrl?: string;
  username?: string;
  password?: string;
  projectName?: string;
  projectId?: string;
  userDomainName?: string;
  userDomainId?: string;
  projectDomainName?: string;
  projectDomainId?: string;
  interface?: string;
  regionName?: string;
  authType?: string;
}

const envNames: Record<keyof Values, string> = {
  authUrl: 'OS_AUTH_URL',
  username: 'OS_USERNAME',
  password: 'OS_PASSWORD',
  projectName: 'OS_PROJECT_NAME',
  projectId: 'OS_PROJECT_ID',
  userDomainName: 'OS_USER_DOMAIN_NAME',
  userDomainId: 'OS_USER_DOMAIN_ID',
  projectDomainName: 'OS_PROJECT_DOMAIN_NAME',
  projectDomainId: 'OS_PROJECT_DOMAIN_ID',
  interface: 'OS_INTERFACE',
  regionName: 'OS_REGION_NAME',
  authType: 'OS_AUTH_TYPE',
};

function envValues(env: NodeJS.ProcessEnv): Values {
  const v: Values = {};
  for (const [key, name] of Object.entries(envNames) as Array<[keyof Values, string]>) {
    const value = nonEmpty(env[name]);
    if (value !== undefined) v[key] = value;
  }
  // Older openrc files still say TENANT.
  v.projectName ??= nonEmpty(env.OS_TENANT_NAME);
  v.projectId ??= nonEmpty(env.OS_TENANT_ID);
  return v;
}

function fromValues(v: Values, source: string, names: Record<keyof Values, string>): OpenStackConfigResult {
  const missing: string[] = [];
  if (v.authType && !['password', 'v3password'].includes(v.authType)) {
    missing.push(`${names.authType}=${v.authType} is not supported (password authentication only)`);
  }
  if (!v.authUrl) missing.push(names.authUrl);
  if (!v.username) missing.push(names.username);
  if (!v.password) missing.push(names.password);
  if (!v.projectName && !v.projectId) missing.push(`${names.projectName} (or ${names.projectId})`);
  if (!v.userDomainName && !v.userDomainId) missing.push(`${names.userDomainName} (or ${names.userDomainId})`);
  // A project named by id needs no domain.
  if (!v.projectId && !v.projectDomainName && !v.projectDomainId) {
    missing.push(`${names.projectDomainName} (or ${names.projectDomainId})`);
  }
  if (missing.length > 0) return { missing };
  const config: OpenStackConfig = {
    authUrl: v.authUrl!,
    username: v.username!,
    password: v.password!,
    projectName: v.projectName ?? '',
    userDomainName: v.userDomainName ?? '',
    projectDomainName: v.projectDomainName ?? '',
    interface: normaliseInterface(v.interface ?? 'public'),
    source,
  };
  if (v.regionName) config.regionName = v.regionName;
  if (v.projectId) config.projectId = v.projectId;
  if (v.userDomainId) config.userDomainId = v.userDomainId;
  if (v.projectDomainId) config.projectDomainId = v.projectDomainId;
  return { config };
}

/** keystoneauth accepts the v2 names (publicURL) too. */
function normaliseInterface(value: string): string {
  return value.replace(/URL$/, '').toLowerCase();
}

export function cloudsYamlSearchPaths(env: NodeJS.ProcessEnv, cwd: string): string[] {
  const paths: string[] = [];
  const explicit = nonEmpty(env.OS_CLIENT_CONFIG_FILE);
  if (explicit) paths.push(explicit);
  paths.push(path.join(cwd, 'clouds.yaml'));
  const home = nonEmpty(env.HOME);
  if (home) paths.push(path.join(home, '.config', 'openstack', 'clouds.yaml'));
  paths.push('/etc/openstack/clouds.yaml');
  return paths;
}

function fromCloudsYaml(cloud: string, env: NodeJS.ProcessEnv, options: LoadOpenStackConfigOptions): OpenStackConfigResult {
  const paths = options.cloudsYamlPaths ?? cloudsYamlSearchPaths(env, options.cwd ?? process.cwd());
  const file = paths.find((p) => existsSync(p));
  if (!file) return { missing: [`clouds.yaml for OS_CLOUD=${cloud} (looked in ${paths.join(', ')})`] };
  let doc: unknown;
  try {
    doc = parseYamlSubset(readFileSync(file, 'utf8'));
  } catch (err) {
    return { missing: [`a readable ${file} (${(err as Error).message})`] };
  }
  let entry = objectAt(doc, ['clouds', cloud]);
  if (!entry) return { missing: [`clouds.${cloud} in ${file}`] };
  // secure.yaml keeps passwords apart from clouds.yaml; its values win.
  const secureFile = path.join(path.dirname(file), 'secure.yaml');
  if (existsSync(secureFile)) {
    try {
      const secure = objectAt(parseYamlSubset(readFileSync(secureFile, 'utf8')), ['clouds', cloud]);
      if (secure) entry = deepMerge(entry, secure);
    } catch (err) {
      return { missing: [`a readable ${secureFile} (${(err as Error).message})`] };
    }
  }
  const auth = objectAt(entry, ['auth']) ?? {};
  const str = (o: Record<string, unknown>, k: string) => (o[k] === undefined || o[k] === null ? undefined : nonEmpty(String(o[k])));
  const regions = Array.isArray(entry.regions) ? entry.regions : undefined;
  const firstRegion = regions?.length === 1 ? (typeof regions[0] === 'object' ? str(regions[0] as Record<string, unknown>, 'name') : String(regions[0])) : undefined;
  const fromFile: Values = {
    authUrl: str(auth, 'auth_url'),
    username: str(auth, 'username'),
    password: str(auth, 'password'),
    projectName: str(auth, 'project_name') ?? str(auth, 'tenant_name'),
    projectId: str(auth, 'project_id') ?? str(auth, 'tenant_id'),
    userDomainName: str(auth, 'user_domain_name') ?? str(auth, 'domain_name'),
    userDomainId: str(auth, 'user_domain_id') ?? str(auth, 'domain_id'),
    projectDomainName: str(auth, 'project_domain_name') ?? str(auth, 'domain_name'),
    projectDomainId: str(auth, 'project_domain_id') ?? str(auth, 'domain_id'),
    interface: str(entry, 'interface') ?? str(entry, 'endpoint_type'),
    regionName: str(entry, 'region_name') ?? firstRegion,
    authType: str(entry, 'auth_type'),
  };
  const fromEnv = envValues(env);
  const merged: Values = { ...fromFile };
  for (const [k, v] of Object.entries(fromEnv) as Array<[keyof Values, string | undefined]>) {
    if (merged[k] === undefined && v !== undefined) merged[k] = v;
  }
  const keyNames: Record<keyof Values, string> = {
    authUrl: `clouds.${cloud}.auth.auth_url`,
    username: `clouds.${cloud}.auth.username`,
    password: `clouds.${cloud}.auth.password`,
    projectName: `clouds.${cloud}.auth.project_name`,
    projectId: `clouds.${cloud}.auth.project_id`,
    userDomainName: `clouds.${cloud}.auth.user_domain_name`,
    userDomainId: `clouds.${cloud}.auth.user_domain_id`,
    projectDomainName: `clouds.${cloud}.auth.project_domain_name`,
    projectDomainId: `clouds.${cloud}.auth.project_domain_id`,
    interface: `clouds.${cloud}.interface`,
    regionName: `clouds.${cloud}.region_name`,
    authType: `clouds.${cloud}.auth_type`,
  };
  const result = fromValues(merged, file, keyNames);
  if ('missing' in result) return { missing: result.missing.map((m) => (m.startsWith('clouds.') ? `${m} in ${file}` : m)) };
  return result;
}

function objectAt(doc: unknown, keys: string[]): Record<string, unknown> | undefined {
  let cur = doc;
  for (const k of keys) {
    if (!cur || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur && typeof cur === 'object' && !Array.isArray(cur) ? (cur as Record<string, unknown>) : undefined;
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = prev && v && typeof prev === 'object' && typeof v === 'object' && !Array.isArray(prev) && !Array.isArray(v)
      ? deepMerge(prev as Record<string, unknown>, v as Record<string, unknown>)
      : v;
  }
  return out;
}

function nonEmpty(v: string | undefined): string | undefined {
  const t = v?.trim();
  return t ? t : undefined;
}

// --- clouds.yaml ---------------------------------------------------------------
// The subset of YAML that clouds.yaml files use: nested block mappings, block
// sequences, flow sequences of scalars, plain and quoted scalars, comments.
// Anything else (anchors, multi-line scalars, several documents) is refused with
// its line number rather than misread.

interface Line {
  indent: number;
  text: string;
  no: number;
}

export function parseYamlSubset(source: string): unknown {
  const lines: Line[] = [];
  source.split(/\r?\n/).forEach((raw, i) => {
    if (/^\s*(#.*)?$/.test(raw)) return;
    if (raw === '---' && lines.length === 0) return;
    if (/^(---|\.\.\.)\s*$/.test(raw)) throw new Error(`line ${i + 1}: several YAML documents are not supported`);
    if (/^\s*\t/.test(raw)) throw new Error(`line ${i + 1}: tabs are not allowed for indentation`);
    const indent = raw.length - raw.trimStart().length;
    lines.push({ indent, text: stripComment(raw.trim()), no: i + 1 });
  });
  if (lines.length === 0) return {};
  let pos = 0;

  const parseBlock = (indent: number): unknown => {
    const first = lines[pos]!;
    if (first.text.startsWith('- ') || first.text === '-') return parseSequence(indent);
    return parseMapping(indent);
  };

  const parseMapping = (indent: number): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    while (pos < lines.length) {
      const line = lines[pos]!;
      if (line.indent < indent) break;
      if (line.indent > indent) throw new Error(`line ${line.no}: unexpected indentation`);
      const m = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^:#'"][^:]*?)\s*:(?:\s+(.*))?$/.exec(line.text);
      if (!m) throw new Error(`line ${line.no}: expected "key: value"`);
      const key = String(scalar(m[1]!, line.no));
      pos++;
      const rest = m[2]?.trim();
      if (rest) out[key] = inlineValue(rest, line.no);
      else if (pos < lines.length && (lines[pos]!.indent > indent || (lines[pos]!.indent === indent && lines[pos]!.text.startsWith('-')))) {
        out[key] = parseBlock(lines[pos]!.indent);
      } else out[key] = null;
    }
    return out;
  };

  const parseSequence = (indent: number): unknown[] => {
    const out: unknown[] = [];
    while (pos < lines.length) {
      const line = lines[pos]!;
      if (line.indent !== indent || !(line.text.startsWith('- ') || line.text === '-')) break;
      const rest = line.text.slice(1).trim();
      if (!rest) {
        pos++;
        out.push(pos < lines.length && lines[pos]!.indent > indent ? parseBlock(lines[pos]!.indent) : null);
      } else if (/^[^'"[{][^:]*:(\s|$)/.test(rest) || /^("[^"]*"|'[^']*')\s*:(\s|$)/.test(rest)) {
        // "- key: value" starts a mapping whose keys sit two columns further in.
        const inner = indent + (line.text.length - rest.length);
        lines[pos] = { indent: inner, text: rest, no: line.no };
        out.push(parseMapping(inner));
      } else {
        pos++;
        out.push(inlineValue(rest, line.no));
      }
    }
    return out;
  };

  const result = parseBlock(lines[0]!.indent);
  if (pos < lines.length) throw new Error(`line ${lines[pos]!.no}: unexpected content`);
  return result;
}

function stripComment(text: string): string {
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]!))) return text.slice(0, i).trimEnd();
  }
  return text;
}

function inlineValue(text: string, no: number): unknown {
  if (text.startsWith('[')) {
    if (!text.endsWith(']')) throw new Error(`line ${no}: flow sequences must close on the same line`);
    const body = text.slice(1, -1).trim();
    return body ? splitFlow(body).map((s) => scalar(s.trim(), no)) : [];
  }
  if (text.startsWith('{')) {
    if (!text.endsWith('}')) throw new Error(`line ${no}: flow mappings must close on the same line`);
    const out: Record<string, unknown> = {};
    const body = text.slice(1, -1).trim();
    for (const part of body ? splitFlow(body) : []) {
      const i = part.indexOf(':');
      if (i < 0) throw new Error(`line ${no}: expected "key: value" in a flow mapping`);
      out[String(scalar(part.slice(0, i).trim(), no))] = scalar(part.slice(i + 1).trim(), no);
    }
    return out;
  }
  if (/^[&*!|>]/.test(text)) throw new Error(`line ${no}: anchors, tags and block scalars are not supported`);
  return scalar(text, no);
}

function splitFlow(body: string): string[] {
  const parts: string[] = [];
  let quote: string | undefined;
  let start = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === ',') {
      parts.push(body.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(body.slice(start));
  return parts;
}

function scalar(text: string, no: number): unknown {
  if (text.startsWith('"')) {
    if (!text.endsWith('"') || text.length < 2) throw new Error(`line ${no}: unterminated string`);
    try {
      return JSON.parse(text);
    } catch {
      throw new Error(`line ${no}: unsupported escape in a double-quoted string`);
    }
  }
  if (text.startsWith("'")) {
    if (!text.endsWith("'") || text.length < 2) throw new Error(`line ${no}: unterminated string`);
    return text.slice(1, -1).replace(/''/g, "'");
  }
  if (text === '' || text === '~' || text === 'null' || text === 'Null' || text === 'NULL') return null;
  if (/^(true|True|TRUE)$/.test(text)) return true;
  if (/^(false|False|FALSE)$/.test(text)) return false;
  // Numbers stay text: every value here is used as a string, and "0123" must stay "0123".
  return text;
}
