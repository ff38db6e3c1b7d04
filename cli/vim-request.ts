// The command line of `vim register` and `vim update` as VimService requests:
// Tacker's vim.yaml (`openstack vim register --config-file`), secrets read from
// files, standard input or a named variable (never from a flag's value, which
// `ps` shows), `--monitor key=value` and `--set key=value` with the update_mask
// paths they name. Every mistake is a UsageError naming the flag or key.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { msToDuration } from '../common/duration.js';
import { parseDurationMs } from '../common/env.js';
import type { Duration } from '../gen/google/protobuf/duration.js';
import {
  ProbeKind,
  VimType,
  type Credentials,
  type DeepPartial,
  type MonitorPolicy,
  type RegisterVimRequest,
  type Vim,
} from '../gen/vimmon/tacker/v1/vim_service.js';
import { UsageError } from './failure.js';
import type { CliIo } from './output.js';

const maxFileBytes = 64 * 1024;

export interface CredentialFlags {
  username?: string;
  passwordFile?: string;
  passwordEnv?: string;
  userDomain?: string;
  projectDomain?: string;
  bearerTokenFile?: string;
  bearerTokenEnv?: string;
  oidcTokenUrl?: string;
  clientId?: string;
  clientSecretFile?: string;
  clientSecretEnv?: string;
  sslCaCertFile?: string;
}

export interface RegisterFlags extends CredentialFlags {
  authUrl?: string;
  type?: string;
  project?: string;
  description?: string;
  configFile?: string;
  default?: boolean;
  monitor?: string[];
  ownerProject?: string;
}

export function parseVimType(value: string, source: string): VimType {
  switch (value.trim().toLowerCase()) {
    case 'openstack':
      return VimType.VIM_TYPE_OPENSTACK;
    case 'kubernetes':
      return VimType.VIM_TYPE_KUBERNETES;
    default:
      throw new UsageError(`${source}: expected openstack or kubernetes, got ${JSON.stringify(value)}`);
  }
}

async function readAll(stream: NodeJS.ReadableStream, source: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream) {
    const b = typeof c === 'string' ? Buffer.from(c) : (c as Buffer);
    size += b.length;
    if (size > maxFileBytes) throw new UsageError(`${source}: standard input is longer than ${maxFileBytes} bytes`);
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function readSmallFile(file: string, source: string): string {
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (err) {
    throw new UsageError(`${source}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (data.length > maxFileBytes) throw new UsageError(`${source}: ${file} is longer than ${maxFileBytes} bytes`);
  return data.toString('utf8');
}

/** A secret from a file (`-`: standard input) or from the variable a flag names; its last line break dropped. */
async function secret(
  io: CliIo,
  file: string | undefined,
  fileFlag: string,
  variable: string | undefined,
  envFlag: string,
): Promise<string | undefined> {
  if (file !== undefined && variable !== undefined) throw new UsageError(`${fileFlag} and ${envFlag}: give one`);
  let value: string | undefined;
  if (file !== undefined) {
    if (file === '-') {
      if (!io.stdin) throw new UsageError(`${fileFlag} -: no standard input`);
      value = await readAll(io.stdin, fileFlag);
    } else value = readSmallFile(file, fileFlag);
    value = value.replace(/\r?\n$/, '');
  } else if (variable !== undefined) {
    value = io.env[variable];
    if (value === undefined || value === '') throw new UsageError(`${envFlag}: ${variable} is not set`);
  }
  if (value !== undefined && value === '') throw new UsageError(`${fileFlag}: ${file} is empty`);
  return value;
}

/** Tacker's vim.yaml keys; the ones vimmon has no use for are read and ignored. */
const configKeys = new Set([
  'auth_url',
  'username',
  'password',
  'project_name',
  'project_domain_name',
  'user_domain_name',
  'bearer_token',
  'type',
  // OpenID Connect (Kubernetes VIMs), with username and password.
  'oidc_token_url',
  'client_id',
  'client_secret',
  'ssl_ca_cert',
  // Read and ignored: without ssl_ca_cert the probes take any certificate (README: VIMs and their monitor policy).
  'cert_verify',
]);

export type VimConfigFile = Partial<Record<string, string>>;

export function parseVimConfig(text: string, file: string): VimConfigFile {
  let doc: unknown;
  try {
    doc = parseYaml(text, { maxAliasCount: 10 });
  } catch (err) {
    throw new UsageError(`--config-file ${file}: not YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw new UsageError(`--config-file ${file}: expected a mapping of keys such as auth_url`);
  const out: VimConfigFile = {};
  for (const [key, value] of Object.entries(doc)) {
    if (!configKeys.has(key))
      throw new UsageError(`--config-file ${file}: unknown key ${JSON.stringify(key)} (known: ${[...configKeys].join(', ')})`);
    if (key === 'cert_verify' && typeof value === 'boolean') continue;
    if (typeof value !== 'string' && typeof value !== 'number') throw new UsageError(`--config-file ${file}: ${key}: expected text`);
    out[key] = String(value);
  }
  return out;
}

/** Credentials from the flags, else from the config file; undefined: none given. */
async function credentialsFrom(io: CliIo, flags: CredentialFlags, config: VimConfigFile = {}): Promise<Credentials | undefined> {
  const password = (await secret(io, flags.passwordFile, '--password-file', flags.passwordEnv, '--password-env')) ?? config.password;
  const bearerToken =
    (await secret(io, flags.bearerTokenFile, '--bearer-token-file', flags.bearerTokenEnv, '--bearer-token-env')) ?? config.bearer_token;
  const clientSecret =
    (await secret(io, flags.clientSecretFile, '--client-secret-file', flags.clientSecretEnv, '--client-secret-env')) ??
    config.client_secret;
  const sslCaCert = flags.sslCaCertFile !== undefined ? readSmallFile(flags.sslCaCertFile, '--ssl-ca-cert-file') : config.ssl_ca_cert;
  const username = flags.username ?? config.username;
  const oidcTokenUrl = flags.oidcTokenUrl ?? config.oidc_token_url;
  const clientId = flags.clientId ?? config.client_id;
  const out: Credentials = { password: undefined, token: undefined, oidc: undefined, sslCaCert: sslCaCert ?? '' };
  if (password !== undefined && bearerToken !== undefined)
    throw new UsageError('a password and a bearer token: give one kind of credentials');
  if (oidcTokenUrl !== undefined || clientId !== undefined || clientSecret !== undefined) {
    if (bearerToken !== undefined) throw new UsageError('OpenID Connect and a bearer token: give one kind of credentials');
    if (!oidcTokenUrl) throw new UsageError('OpenID Connect needs --oidc-token-url (or oidc_token_url in --config-file)');
    if (!clientId) throw new UsageError('OpenID Connect needs --client-id (or client_id in --config-file)');
    if (!username) throw new UsageError('OpenID Connect needs --username (or username in --config-file)');
    if (password === undefined)
      throw new UsageError('OpenID Connect needs --password-file or --password-env (or password in --config-file)');
    out.oidc = { oidcTokenUrl, clientId, clientSecret: clientSecret ?? '', username, password };
    return out;
  }
  if (bearerToken !== undefined) {
    if (flags.username !== undefined) throw new UsageError('--username goes with a password, not a bearer token');
    out.token = { bearerToken };
    return out;
  }
  if (password !== undefined || username !== undefined) {
    if (!username) throw new UsageError('a password needs --username (or username in --config-file)');
    if (password === undefined) throw new UsageError('--username needs --password-file or --password-env (or password in --config-file)');
    out.password = {
      username,
      password,
      userDomainName: flags.userDomain ?? config.user_domain_name ?? '',
      projectDomainName: flags.projectDomain ?? config.project_domain_name ?? '',
    };
    return out;
  }
  if (flags.userDomain !== undefined || flags.projectDomain !== undefined)
    throw new UsageError('--user-domain and --project-domain go with --username');
  return sslCaCert !== undefined ? out : undefined;
}

export async function registerRequest(io: CliIo, name: string, flags: RegisterFlags): Promise<DeepPartial<RegisterVimRequest>> {
  const config = flags.configFile !== undefined ? parseVimConfig(readSmallFile(flags.configFile, '--config-file'), flags.configFile) : {};
  const authUrl = flags.authUrl ?? config.auth_url;
  if (!authUrl) throw new UsageError('--auth-url is required (or auth_url in --config-file)');
  const typeText = flags.type ?? config.type;
  return {
    name,
    description: flags.description ?? '',
    type:
      typeText === undefined
        ? VimType.VIM_TYPE_OPENSTACK
        : parseVimType(typeText, flags.type !== undefined ? '--type' : '--config-file type'),
    authUrl,
    project: flags.project ?? config.project_name ?? '',
    credentials: await credentialsFrom(io, flags, config),
    monitor: flags.monitor?.length ? monitorPolicy(flags.monitor.map((p) => keyValue(p, '--monitor'))) : undefined,
    isDefault: flags.default ?? false,
    ownerProject: flags.ownerProject ?? '',
  };
}

// --- --monitor and --set -------------------------------------------------------------

type MonitorField = keyof MonitorPolicy;

/** The policy fields by their proto names, each with how its text becomes a value. */
const monitorFields: Record<string, { field: MonitorField; parse(text: string, source: string): unknown }> = {
  probe: { field: 'probe', parse: parseProbe },
  interval: { field: 'interval', parse: parseDuration },
  timeout: { field: 'timeout', parse: parseDuration },
  count: { field: 'count', parse: parseCount },
  unreachable_after: { field: 'unreachableAfter', parse: parseCount },
  report_interval: { field: 'reportInterval', parse: parseDuration },
  stale_after: { field: 'staleAfter', parse: parseDuration },
};

function parseProbe(text: string, source: string): ProbeKind {
  const kinds: Record<string, ProbeKind> = {
    tcp: ProbeKind.PROBE_KIND_TCP,
    http: ProbeKind.PROBE_KIND_HTTP,
    icmp: ProbeKind.PROBE_KIND_ICMP,
    auth: ProbeKind.PROBE_KIND_AUTH,
  };
  const kind = kinds[text.trim().toLowerCase()];
  if (kind === undefined) throw new UsageError(`${source}: expected tcp, http, icmp or auth, got ${JSON.stringify(text)}`);
  return kind;
}

function parseDuration(text: string, source: string): Duration {
  const ms = parseDurationMs(text);
  if (ms === undefined || ms <= 0)
    throw new UsageError(`${source}: expected a duration such as 500ms, 10s or 5m, got ${JSON.stringify(text)}`);
  return msToDuration(ms);
}

function parseCount(text: string, source: string): number {
  if (!/^\d{1,6}$/.test(text.trim())) throw new UsageError(`${source}: expected a whole number, got ${JSON.stringify(text)}`);
  return Number(text.trim());
}

function parseBoolean(text: string, source: string): boolean {
  const v = text.trim().toLowerCase();
  if (v === 'true' || v === 'yes' || v === '1') return true;
  if (v === 'false' || v === 'no' || v === '0') return false;
  throw new UsageError(`${source}: expected true or false, got ${JSON.stringify(text)}`);
}

export function keyValue(pair: string, flag: string): [string, string] {
  const i = pair.indexOf('=');
  if (i <= 0) throw new UsageError(`${flag}: expected key=value, got ${JSON.stringify(pair)}`);
  return [pair.slice(0, i).trim(), pair.slice(i + 1)];
}

function monitorPolicy(pairs: Array<[string, string]>, flag = '--monitor'): DeepPartial<MonitorPolicy> {
  const policy: Record<string, unknown> = {};
  for (const [key, text] of pairs) {
    const f = monitorFields[key];
    if (!f) throw new UsageError(`${flag}: unknown key ${JSON.stringify(key)} (known: ${Object.keys(monitorFields).join(', ')})`);
    policy[f.field] = f.parse(text, `${flag} ${key}`);
  }
  return policy as DeepPartial<MonitorPolicy>;
}

/** The keys --set takes: the update_mask paths a person may write as text. */
export const settableKeys = [
  'name',
  'description',
  'type',
  'auth_url',
  'project',
  'is_default',
  ...Object.keys(monitorFields).map((k) => `monitor.${k}`),
];

export interface VimChange {
  vim: DeepPartial<Vim>;
  paths: string[];
}

/** `--set k=v …` and credential flags → the fields of an UpdateVimRequest and its update_mask paths. */
export async function vimChange(io: CliIo, sets: string[], flags: CredentialFlags): Promise<VimChange> {
  const vim: Record<string, unknown> = {};
  const paths: string[] = [];
  const monitorPairs: Array<[string, string]> = [];
  for (const pair of sets) {
    const [key, text] = keyValue(pair, '--set');
    if (paths.includes(key)) throw new UsageError(`--set: ${key} given twice`);
    const source = `--set ${key}`;
    switch (key) {
      case 'name':
      case 'description':
      case 'project':
        vim[key] = text;
        break;
      case 'auth_url':
        vim.authUrl = text;
        break;
      case 'type':
        vim.type = parseVimType(text, source);
        break;
      case 'is_default':
        vim.isDefault = parseBoolean(text, source);
        break;
      default:
        if (key.startsWith('monitor.') && monitorFields[key.slice('monitor.'.length)]) {
          monitorPairs.push([key.slice('monitor.'.length), text]);
          break;
        }
        throw new UsageError(`--set: unknown key ${JSON.stringify(key)} (known: ${settableKeys.join(', ')})`);
    }
    paths.push(key);
  }
  if (monitorPairs.length > 0) vim.monitor = monitorPolicy(monitorPairs, '--set monitor');
  const credentials = await credentialsFrom(io, flags);
  if (credentials) {
    vim.credentials = credentials;
    // The kind given replaces the previous kind and keeps the stored CA certificate (as Tacker does); a CA file replaces the CA.
    const kind = (['password', 'token', 'oidc'] as const).find((k) => credentials[k] !== undefined);
    if (kind) paths.push(`credentials.${kind}`);
    if (flags.sslCaCertFile !== undefined) paths.push('credentials.ssl_ca_cert');
  }
  if (paths.length === 0) throw new UsageError('nothing to change: give --set key=value (or new credentials)');
  return { vim: vim as DeepPartial<Vim>, paths };
}
