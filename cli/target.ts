// Where the people commands connect and as whom: flags first, then the
// environment, then the roles' default addresses (those `npm start` listens on).
// TLS takes the variable names the roles use (VIMMON_TLS_CA/CERT/KEY); the
// token is VIMMON_TOKEN, as in README's "Calling a secured mesh".
import { readFileSync } from 'node:fs';
import type { TlsOptions, VimmonClientOptions } from '../client/src/index.js';
import { isLoopback } from '../common/auth/setup.js';
import { defaultAddresses, parseDurationMs } from '../common/env.js';
import { UsageError } from './failure.js';

export type RoleName = 'server' | 'inspector' | 'executor' | 'conductor';

/** The global flags, as commander gives them. */
export interface TargetFlags {
  server?: string;
  inspector?: string;
  executor?: string;
  conductor?: string;
  token?: string;
  tokenFile?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  tls?: boolean;
  tlsServerName?: string;
  timeout?: string;
}

export interface Target {
  addresses: Record<RoleName, string[]>;
  /** PEM contents; undefined: plaintext. */
  tls: TlsOptions | true | undefined;
  token: string | undefined;
  deadlineMs: number;
  /** What createVimmonClient takes. */
  clientOptions: VimmonClientOptions;
}

export const defaultDeadlineMs = 10_000;

/** Help text of the target flags: what each defaults to. */
export const targetHelp = `Target, TLS and token (flags win over the environment):
  --server ADDR        VIMMON_SERVER     default ${defaultAddresses.server}
  --inspector ADDR     VIMMON_INSPECTOR  default ${defaultAddresses.inspector}
  --executor ADDR,…    VIMMON_EXECUTOR   default ${defaultAddresses.executor}
  --conductor ADDR     VIMMON_CONDUCTOR  default ${defaultAddresses.conductor}
  --token-file FILE    VIMMON_TOKEN_FILE, or the token itself in VIMMON_TOKEN
  --ca-file FILE       VIMMON_TLS_CA     (with --cert-file/--key-file: VIMMON_TLS_CERT/KEY)
A list of addresses (a,b) is balanced round robin. A token is never sent in
plaintext beyond loopback: give --ca-file or --tls.`;

const hostPort = /^(\[[0-9a-fA-F:.]+\]|[^:\s/,]+):(\d{1,5})$/;

function addressList(value: string, source: string): string[] {
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (items.length === 0) throw new UsageError(`${source}: no address in ${JSON.stringify(value)}`);
  if (items.length > 64) throw new UsageError(`${source}: at most 64 addresses`);
  for (const item of items) {
    const m = hostPort.exec(item);
    if (!m || Number(m[2]) > 65_535 || Number(m[2]) === 0)
      throw new UsageError(`${source}: expected host:port, got ${JSON.stringify(item)}`);
  }
  return items;
}

/** A flag's value, else the variable's (blank counts as unset), naming where it came from. */
function pick(
  flag: string | undefined,
  flagName: string,
  env: NodeJS.ProcessEnv,
  variable: string,
): { value: string; source: string } | undefined {
  if (flag !== undefined) return { value: flag, source: flagName };
  const v = env[variable]?.trim();
  return v ? { value: v, source: variable } : undefined;
}

function readPem(file: string, source: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${source}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function readToken(file: string, source: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${source}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const token = text.trim();
  if (!token) throw new UsageError(`${source}: ${file} holds no token`);
  if (/\s/.test(token)) throw new UsageError(`${source}: ${file} holds more than one word; a token is one`);
  return token;
}

export function resolveTarget(flags: TargetFlags, env: NodeJS.ProcessEnv): Target {
  const role = (name: RoleName, variable: string) => {
    const given = pick(flags[name], `--${name}`, env, variable);
    return given ? addressList(given.value, given.source) : [defaultAddresses[name]];
  };
  const addresses: Record<RoleName, string[]> = {
    server: role('server', 'VIMMON_SERVER'),
    inspector: role('inspector', 'VIMMON_INSPECTOR'),
    executor: role('executor', 'VIMMON_EXECUTOR'),
    conductor: role('conductor', 'VIMMON_CONDUCTOR'),
  };

  let deadlineMs = defaultDeadlineMs;
  if (flags.timeout !== undefined) {
    const ms = parseDurationMs(flags.timeout);
    if (ms === undefined || ms <= 0 || ms > 3_600_000) {
      throw new UsageError(`--timeout: expected a duration such as 500ms, 10s or 2m (at most 1h), got ${JSON.stringify(flags.timeout)}`);
    }
    deadlineMs = ms;
  }

  const ca = pick(flags.caFile, '--ca-file', env, 'VIMMON_TLS_CA');
  const cert = pick(flags.certFile, '--cert-file', env, 'VIMMON_TLS_CERT');
  const key = pick(flags.keyFile, '--key-file', env, 'VIMMON_TLS_KEY');
  if (!!cert !== !!key)
    throw new UsageError(`${cert?.source ?? key!.source}: a client certificate and its key go together (--cert-file and --key-file)`);
  let tls: TlsOptions | true | undefined;
  if (ca || cert || flags.tlsServerName) {
    tls = {
      ca: ca && readPem(ca.value, ca.source),
      cert: cert && readPem(cert.value, cert.source),
      key: key && readPem(key.value, key.source),
      serverName: flags.tlsServerName,
    };
  } else if (flags.tls) tls = true;

  if (flags.token !== undefined && flags.tokenFile !== undefined) throw new UsageError('--token and --token-file: give one');
  let token: string | undefined;
  if (flags.token !== undefined) {
    token = flags.token.trim();
    if (!token) throw new UsageError('--token: empty');
  } else if (flags.tokenFile !== undefined) token = readToken(flags.tokenFile, '--token-file');
  else if (env.VIMMON_TOKEN?.trim()) token = env.VIMMON_TOKEN.trim();
  else if (env.VIMMON_TOKEN_FILE?.trim()) token = readToken(env.VIMMON_TOKEN_FILE.trim(), 'VIMMON_TOKEN_FILE');

  if (token && !tls) {
    const exposed = Object.values(addresses)
      .flat()
      .filter((a) => !isLoopback(a));
    // Only the roles a command calls matter, but a token for one is a token for all: refuse up front.
    if (exposed.length > 0) {
      throw new UsageError(
        `refusing to send a token in plaintext to ${exposed.join(', ')}: give --ca-file (or VIMMON_TLS_CA), or --tls for the system's CAs`,
      );
    }
  }

  return {
    addresses,
    tls,
    token,
    deadlineMs,
    clientOptions: {
      server: addresses.server,
      inspector: addresses.inspector,
      executor: addresses.executor,
      conductor: addresses.conductor,
      tls,
      token,
      deadline: deadlineMs,
    },
  };
}
