// Security settings from the environment and what follows from them: the
// authenticator every role of the process shares, each role's TLS, and the
// credential each role presents to the others. Secure unless told otherwise:
// a role listening beyond loopback without TLS and authentication refuses to
// start, naming the variables, unless VIMMON_INSECURE=true (then it warns at
// every start). With no credentials configured and loopback addresses only,
// authentication is off: the zero-setup development mode of `npm start`.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseEnvironment, type Environment } from '../env.js';
import type { Logger } from '../logger.js';
import { loadTls, type Tls, type TlsFiles } from '../tls.js';
import { createAuth, type Auth } from './authenticator.js';
import { keystoneTokenValidatorFromEnv, type KeystoneTokenValidator } from './keystone-tokens.js';
import { loadPolicy } from './policy.js';
import type { ServiceRole } from './principal.js';
import { spiffeIdOf } from './spiffe.js';
import { loadStaticTokens } from './static-tokens.js';

export interface SecuritySettings {
  /** VIMMON_AUTH_TOKENS_FILE: static bearer tokens. */
  tokensFile?: string;
  /** VIMMON_AUTH_KEYSTONE=true: validate Keystone tokens, as the OS_* / OS_CLOUD service user. */
  keystone: boolean;
  keystoneRevalidateMs: number;
  keystoneCacheSize: number;
  /** VIMMON_POLICY_FILE: overrides of the policy table. */
  policyFile?: string;
  /** VIMMON_TRUST_DOMAIN: of the SPIFFE ids in the mesh's certificates. */
  trustDomain: string;
  /** VIMMON_INSECURE=true: start beyond loopback without TLS or authentication. */
  insecure: boolean;
  /** VIMMON_SERVICE_TOKEN_FILE: the token this process's roles present to other roles. */
  serviceTokenFile?: string;
  /** VIMMON_STREAMS_PER_PRINCIPAL. */
  streamsPerPrincipal: number;
  /** VIMMON_TLS_DIR: ca.pem and <role>.pem/.key as deploy/make-certs.sh writes them. */
  tlsDir?: string;
}

/** From the environment parsed once (common/env.ts). */
export function securitySettingsFrom(e: Environment): SecuritySettings {
  return {
    tokensFile: e.VIMMON_AUTH_TOKENS_FILE,
    keystone: e.VIMMON_AUTH_KEYSTONE,
    keystoneRevalidateMs: e.VIMMON_AUTH_KEYSTONE_REVALIDATE,
    keystoneCacheSize: e.VIMMON_AUTH_KEYSTONE_CACHE,
    policyFile: e.VIMMON_POLICY_FILE,
    trustDomain: e.VIMMON_TRUST_DOMAIN,
    insecure: e.VIMMON_INSECURE,
    serviceTokenFile: e.VIMMON_SERVICE_TOKEN_FILE,
    streamsPerPrincipal: e.VIMMON_STREAMS_PER_PRINCIPAL,
    tlsDir: e.VIMMON_TLS_DIR,
  };
}

/** Parses the whole environment: a bad value of any variable throws, every one named. */
export function loadSecuritySettings(env: NodeJS.ProcessEnv = process.env): SecuritySettings {
  return securitySettingsFrom(parseEnvironment(env));
}

export interface Security {
  auth: Auth;
  /** The TLS a role serves and calls with; undefined: plaintext. */
  tlsFor(role: ServiceRole): Tls | undefined;
  /** The bearer token a role presents on its calls to other roles, when its certificate does not say who it is. */
  serviceTokenFor(role: ServiceRole): string | undefined;
}

export interface PrepareSecurityOptions {
  settings: SecuritySettings;
  tlsFiles: TlsFiles;
  /** The listen addresses of the roles this process runs (gRPC and HTTP), by variable name. */
  addresses: Record<string, string>;
  /** The OS_* variables, for VIMMON_AUTH_KEYSTONE's service user (openStackVariables of common/env.ts). */
  env: NodeJS.ProcessEnv;
  logger: Logger;
  fetch?: typeof fetch;
}

export function isLoopback(address: string): boolean {
  return /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\]|localhost):\d+$/.test(address);
}

export function prepareSecurity(options: PrepareSecurityOptions): Security {
  const { settings, env, logger } = options;
  const { tlsDir } = settings;
  if (tlsDir && (options.tlsFiles.certFile || options.tlsFiles.keyFile || options.tlsFiles.caFile)) {
    throw new Error('VIMMON_TLS_DIR and VIMMON_TLS_CERT/KEY/CA: set one or the other');
  }
  const tokensConfigured = settings.tokensFile !== undefined || settings.keystone;
  const clientCertificates = tokensConfigured ? 'optional' : 'require';
  const shared = tlsDir ? undefined : loadTls(options.tlsFiles);
  const perRole = new Map<ServiceRole, Tls>();
  const tlsFor = (role: ServiceRole): Tls | undefined => {
    if (!tlsDir) return shared && { ...shared, clientCertificates };
    let tls = perRole.get(role);
    if (!tls) {
      tls = loadTls({
        certFile: path.join(tlsDir, `${role}.pem`),
        keyFile: path.join(tlsDir, `${role}.key`),
        caFile: path.join(tlsDir, 'ca.pem'),
      })!;
      tls.clientCertificates = clientCertificates;
      perRole.set(role, tls);
    }
    return tls;
  };
  const tlsOn = tlsDir !== undefined || (shared?.cert !== undefined && shared.key !== undefined);
  const mutual = tlsDir !== undefined || shared?.ca !== undefined;
  const authConfigured = tokensConfigured || (tlsOn && mutual);

  const exposed = Object.entries(options.addresses).filter(([, a]) => !isLoopback(a));
  const exposedText = exposed.map(([name, a]) => `${name}=${a}`).join(', ');
  if (exposed.length > 0 && (!tlsOn || !authConfigured)) {
    const missing = [
      !tlsOn && 'TLS (VIMMON_TLS_DIR, or VIMMON_TLS_CERT and VIMMON_TLS_KEY)',
      !authConfigured && 'authentication (a CA for client certificates, VIMMON_AUTH_TOKENS_FILE or VIMMON_AUTH_KEYSTONE)',
    ]
      .filter(Boolean)
      .join(' and ');
    if (!settings.insecure) {
      throw new Error(
        `${exposedText} is not a loopback address and ${missing} is not configured; configure it (README: Securing a deployment) or set VIMMON_INSECURE=true`,
      );
    }
    logger.warn(`VIMMON_INSECURE=true: serving beyond loopback without ${missing}; anyone who reaches these ports can steer the mesh`, {
      addresses: exposedText,
    });
  }

  let auth: Auth;
  if (!authConfigured) {
    auth = createAuth({ mode: 'development', streamsPerPrincipal: settings.streamsPerPrincipal });
    logger.warn(
      'development mode: authentication is off and every caller may do everything (loopback only); see README "Securing a deployment"',
    );
  } else {
    const staticTokens = settings.tokensFile ? loadStaticTokens(settings.tokensFile) : undefined;
    let keystone: KeystoneTokenValidator | undefined;
    if (settings.keystone) {
      try {
        keystone = keystoneTokenValidatorFromEnv(env, {
          fetch: options.fetch,
          cacheSize: settings.keystoneCacheSize,
          revalidateMs: settings.keystoneRevalidateMs,
        });
      } catch (err) {
        throw new Error(`VIMMON_AUTH_KEYSTONE: ${(err as Error).message}`);
      }
    }
    auth = createAuth({
      mode: 'enforced',
      trustDomain: settings.trustDomain,
      staticTokens,
      keystone,
      policy: loadPolicy(settings.policyFile),
      streamsPerPrincipal: settings.streamsPerPrincipal,
    });
    logger.info('authentication on', {
      clientCertificates: mutual ? clientCertificates : 'none',
      staticTokens: staticTokens?.size ?? 0,
      keystone: settings.keystone,
      policyFile: settings.policyFile ?? 'defaults',
      trustDomain: settings.trustDomain,
    });
  }

  let serviceToken: string | undefined;
  if (settings.serviceTokenFile) {
    try {
      serviceToken = readFileSync(settings.serviceTokenFile, 'utf8').trim();
    } catch (err) {
      throw new Error(`VIMMON_SERVICE_TOKEN_FILE: cannot read ${settings.serviceTokenFile}: ${(err as Error).message}`);
    }
    if (!serviceToken) throw new Error(`VIMMON_SERVICE_TOKEN_FILE: ${settings.serviceTokenFile} is empty`);
  }
  return {
    auth,
    tlsFor,
    serviceTokenFor(role) {
      if (serviceToken) return serviceToken;
      const cert = tlsFor(role)?.cert;
      if (cert && spiffeIdOf(new X509Certificate(cert).subjectAltName)) return undefined;
      // Known to this process only: enough for vimmon all; separate processes need a certificate or VIMMON_SERVICE_TOKEN_FILE.
      return auth.internalToken(role);
    },
  };
}
