// Where the inspector finds its OpenStack credentials: OS_* variables as in an
// openrc file, or OS_CLOUD naming an entry of clouds.yaml, the two ways every
// OpenStack client accepts. Absence is reported, never thrown: the inspector
// runs without Nova and says what it lacks.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDocument, visit, type YAMLError } from 'yaml';

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
    doc = parseCloudsYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    return { missing: [`a readable ${file} (${(err as Error).message})`] };
  }
  let entry = objectAt(doc, ['clouds', cloud]);
  if (!entry) return { missing: [`clouds.${cloud} in ${file}`] };
  // secure.yaml keeps passwords apart from clouds.yaml; its values win.
  const secureFile = path.join(path.dirname(file), 'secure.yaml');
  if (existsSync(secureFile)) {
    try {
      const secure = objectAt(parseCloudsYaml(readFileSync(secureFile, 'utf8')), ['clouds', cloud]);
      if (secure) entry = deepMerge(entry, secure);
    } catch (err) {
      return { missing: [`a readable ${secureFile} (${(err as Error).message})`] };
    }
  }
  const auth = objectAt(entry, ['auth']) ?? {};
  const str = (o: Record<string, unknown>, k: string) => (o[k] === undefined || o[k] === null ? undefined : nonEmpty(String(o[k])));
  const regions = Array.isArray(entry.regions) ? entry.regions : undefined;
  const firstRegion =
    regions?.length === 1
      ? typeof regions[0] === 'object'
        ? str(regions[0] as Record<string, unknown>, 'name')
        : String(regions[0])
      : undefined;
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
    out[k] =
      prev && v && typeof prev === 'object' && typeof v === 'object' && !Array.isArray(prev) && !Array.isArray(v)
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
// Read as every OpenStack client reads it (PyYAML): any valid YAML, anchors and
// merge keys included, one document. The failsafe schema keeps every scalar a
// string, so a password such as 0123, yes or 1e3 is taken as written; only a
// plain empty, ~ or null is absent, as for the OpenStack clients. Duplicate keys
// are accepted, the last one winning, as PyYAML does.

const nullScalar = /^(~|null|Null|NULL)?$/;

export function parseCloudsYaml(source: string): unknown {
  // logLevel 'error': an unknown tag is read as a string without a process warning.
  const doc = parseDocument(source, { schema: 'failsafe', merge: true, uniqueKeys: false, logLevel: 'error' });
  const [error] = doc.errors;
  if (error) throw new Error(yamlErrorText(error));
  visit(doc, {
    Scalar(key, node) {
      if (key !== 'key' && node.type === 'PLAIN' && typeof node.value === 'string' && nullScalar.test(node.value)) node.value = null;
    },
  });
  return doc.toJS() ?? {};
}

/** The first line only: the lines after it quote the file, which may hold a password. */
function yamlErrorText(error: YAMLError): string {
  const text = error.message.split('\n', 1)[0]!.replace(/:$/, '');
  const line = error.linePos?.[0].line;
  return line === undefined ? text : `line ${line}: ${text.replace(/ at line \d+, column \d+$/, '')}`;
}
