// Probes: can this VIM's auth_url be reached? One attempt is bounded by the
// policy's timeout; a round is up to `count` attempts and succeeds at the first
// successful one. A probe never throws: a failure is a result with a reason.
//
// No probe reaches an address of the deny list (VIMMON_PROBE_DENY): the
// address actually connected to is checked after DNS, so a name that resolves
// to the cloud's metadata service fails the round instead of probing it.
import { spawn } from 'node:child_process';
import type { LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type tls from 'node:tls';
import {
  createAddressDenyList,
  createFilteringLookup,
  defaultProbeDenyRanges,
  DeniedAddressError,
  type AddressDenyList,
} from '../common/address-deny.js';
import type { AuthUrl } from '../common/auth-url.js';
import type { ExecutorMetrics } from '../common/metrics.js';
import type { ProbeName } from '../common/monitor-policy.js';
import type { StatusReason } from './decision.js';
import type { Trust } from './trust.js';
import { authenticate, type AuthCheck } from './vim-auth.js';

export interface AttemptResult {
  ok: boolean;
  /** Why the attempt failed. */
  error?: string;
  /** No later attempt of this round can do better (e.g. the ping command is missing). */
  final?: boolean;
  /** The VIM answered and refused: its credentials, or its certificate. */
  reason?: StatusReason;
  /** This attempt checked the VIM's credentials. */
  credentialsChecked?: boolean;
}

/** What an action probes: its VIM's auth_url, the CAs an https answer must verify against, and what to authenticate with. */
export interface ProbeTarget extends AuthUrl {
  /** The VIM's CA certificates (ssl_ca_cert); unset: any certificate is taken (reachability only). */
  readonly trust?: Trust;
  /** PROBE_KIND_AUTH: the VIM's credentials and when to check them. */
  readonly auth?: AuthCheck;
}

/** One attempt against a target, settled within timeoutMs or when signal aborts. */
export type Probe = (target: ProbeTarget, timeoutMs: number, signal: AbortSignal) => Promise<AttemptResult>;

export interface RoundResult {
  ok: boolean;
  attempts: number;
  successes: number;
  /** Time to the first successful attempt, or of the whole round when none succeeded. */
  latencyMs: number;
  /** Why the last attempt failed, when the round failed. */
  error: string;
  /** When the round failed because the VIM refused: why. */
  reason: StatusReason;
  /** An attempt of the round checked the VIM's credentials. */
  credentialsChecked: boolean;
}

export interface RoundOptions {
  count: number;
  timeoutMs: number;
}

export async function probeRound(
  probe: Probe,
  target: ProbeTarget,
  { count, timeoutMs }: RoundOptions,
  signal: AbortSignal,
): Promise<RoundResult> {
  const started = performance.now();
  let error = '';
  let reason: StatusReason = '';
  let attempts = 0;
  let credentialsChecked = false;
  while (attempts < count && !signal.aborted) {
    attempts++;
    const attemptStarted = performance.now();
    const result = await probe(target, timeoutMs, signal);
    if (result.credentialsChecked) credentialsChecked = true;
    if (result.ok)
      return { ok: true, attempts, successes: 1, latencyMs: performance.now() - attemptStarted, error: '', reason: '', credentialsChecked };
    error = result.error ?? 'failed';
    reason = result.reason ?? '';
    if (result.final) break;
  }
  return {
    ok: false,
    attempts,
    successes: 0,
    latencyMs: performance.now() - started,
    error: signal.aborted ? 'aborted' : error,
    reason: signal.aborted ? '' : reason,
    credentialsChecked,
  };
}

export interface ProbeOptions {
  /** Addresses no probe may reach; default the link-local range (defaultProbeDenyRanges). */
  deny?: AddressDenyList;
}

/** What every attempt of a probe set checks its target against. */
interface Guard {
  deny: AddressDenyList;
  /** dns.lookup without the denied addresses; undefined when nothing is denied. */
  lookup: net.LookupFunction | undefined;
  /** A target's literal-address verdict, found once per target (an action probes the same one for its life). */
  literals: WeakMap<AuthUrl, AttemptResult | null>;
}

/** One probe of each kind, refusing the addresses of options.deny. */
export function createProbes(options: ProbeOptions = {}): Readonly<Record<ProbeName, Probe>> {
  const deny = options.deny ?? createAddressDenyList(defaultProbeDenyRanges);
  const guard: Guard = { deny, lookup: deny.ranges.length > 0 ? createFilteringLookup(deny) : undefined, literals: new WeakMap() };
  return {
    tcp: (target, timeoutMs, signal) => tcp(guard, target, timeoutMs, signal),
    http: (target, timeoutMs, signal) => httpGet(guard, target, timeoutMs, signal),
    icmp: (target, timeoutMs, signal) => icmp(guard, target, timeoutMs, signal),
    auth: (target, timeoutMs, signal) => authenticating(guard, target, timeoutMs, signal),
  };
}

/** The same probes, each attempt's duration observed by kind and outcome (not an attempt cut short by a stop). */
export function timedProbes(probes: Readonly<Record<ProbeName, Probe>>, metrics: ExecutorMetrics): Readonly<Record<ProbeName, Probe>> {
  const timed = (kind: ProbeName): Probe => {
    const probe = probes[kind];
    const ok = metrics.probeDuration(kind, 'ok');
    const fail = metrics.probeDuration(kind, 'fail');
    return async (target, timeoutMs, signal) => {
      const started = performance.now();
      const result = await probe(target, timeoutMs, signal);
      if (!signal.aborted) (result.ok ? ok : fail).observe((performance.now() - started) / 1000);
      return result;
    };
  };
  return { tcp: timed('tcp'), http: timed('http'), icmp: timed('icmp'), auth: timed('auth') };
}

/** The probes with the default deny list. */
export const probes = createProbes();
export const tcpProbe: Probe = probes.tcp;
export const httpProbe: Probe = probes.http;
export const icmpProbe: Probe = probes.icmp;
export const authProbe: Probe = probes.auth;

const abortedResult: AttemptResult = Object.freeze({ ok: false, error: 'aborted', final: true });
const okResult: AttemptResult = Object.freeze({ ok: true });

/**
 * One attempt, settled once: by the probe's own outcome, its timeout or the
 * abort, whichever comes first; then its timer, abort listener and connection
 * are released. A class rather than closures: thousands run every second.
 */
class Attempt {
  settled = false;
  private readonly timer: NodeJS.Timeout;
  /** Frees what the probe opened (socket, request, child process). */
  release: (() => void) | undefined = undefined;

  constructor(
    private readonly resolve: (result: AttemptResult) => void,
    private readonly signal: AbortSignal,
    readonly timeoutMs: number,
  ) {
    this.timer = setTimeout(settleOnTimeout, timeoutMs, this);
    signal.addEventListener('abort', this, { once: true });
  }

  /** The signal aborted. */
  handleEvent(): void {
    this.settle(abortedResult);
  }

  settle(result: AttemptResult): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.signal.removeEventListener('abort', this);
    this.release?.();
    this.resolve(result);
  }
}

function settleOnTimeout(attempt: Attempt): void {
  attempt.settle({ ok: false, error: `no answer within ${attempt.timeoutMs}ms` });
}

function attempt(timeoutMs: number, signal: AbortSignal, body: (attempt: Attempt) => void): Promise<AttemptResult> {
  if (signal.aborted) return Promise.resolve(abortedResult);
  return new Promise((resolve) => body(new Attempt(resolve, signal, timeoutMs)));
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.message || String(err);
}

// OpenSSL's verification errors as Node names them (tls "X509 certificate error codes"), and Node's own for a name mismatch.
const certificateErrorCodes: ReadonlySet<string> = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_CRL',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CRL_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CRL_NOT_YET_VALID',
  'CRL_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD',
  'ERROR_IN_CRL_NEXT_UPDATE_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** The VIM answered with a certificate its CAs do not vouch for. */
export function isCertificateError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return typeof code === 'string' && certificateErrorCodes.has(code);
}

/**
 * A failed attempt. A denied address is final (no later attempt may reach it
 * either), and so is a certificate that does not verify: the same certificate
 * comes back at the next attempt.
 */
function failure(err: unknown): AttemptResult {
  if (err instanceof DeniedAddressError) return { ok: false, error: `auth_url: ${err.message}; not probed`, final: true };
  if (isCertificateError(err)) {
    const code = (err as NodeJS.ErrnoException).code;
    return { ok: false, error: `certificate verify failed: ${describe(err)} (${code})`, final: true, reason: 'CERTIFICATE_REJECTED' };
  }
  return { ok: false, error: describe(err) };
}

/** The attempt's result when the target is an address literal in a denied range (no lookup guards those). */
function deniedLiteral(guard: Guard, target: AuthUrl): AttemptResult | undefined {
  if (guard.lookup === undefined) return undefined;
  let verdict = guard.literals.get(target);
  if (verdict === undefined) {
    const range = net.isIP(target.host) ? guard.deny.match(target.host) : undefined;
    verdict = range === undefined ? null : Object.freeze(failure(new DeniedAddressError(target.host, range)));
    guard.literals.set(target, verdict);
  }
  return verdict ?? undefined;
}

/** A TCP connection to auth_url's host and port (80/443 by scheme when the URL names none). */
function tcp(guard: Guard, target: AuthUrl, timeoutMs: number, signal: AbortSignal): Promise<AttemptResult> {
  const denied = deniedLiteral(guard, target);
  if (denied) return Promise.resolve(denied);
  return attempt(timeoutMs, signal, (a) => {
    const socket = net.connect({ host: target.host, port: target.port, lookup: guard.lookup });
    let connected = false;
    socket.once('connect', () => {
      connected = true;
      a.settle(okResult);
    });
    socket.on('error', (err) => a.settle(failure(err)));
    a.release = () => {
      // An RST instead of a FIN leaves no TIME_WAIT socket behind on this host
      // for each probe: at thousands of probes a second they would use up the
      // ephemeral ports (Kubernetes' TCP probes close the same way).
      if (connected) socket.resetAndDestroy();
      else socket.destroy();
    };
  });
}

/**
 * An HTTP GET of auth_url. Any HTTP answer, 500 included, means the endpoint
 * is reachable; only a connection error, no answer within the timeout or
 * (with the VIM's CA certificates) a certificate that does not verify is a
 * failure. Redirects are not followed and the body is not read.
 */
function httpGet(guard: Guard, target: ProbeTarget, timeoutMs: number, signal: AbortSignal): Promise<AttemptResult> {
  const denied = deniedLiteral(guard, target);
  if (denied) return Promise.resolve(denied);
  return attempt(timeoutMs, signal, (a) => {
    const options: https.RequestOptions = {
      method: 'GET',
      agent: false,
      lookup: guard.lookup,
      headers: { 'user-agent': 'vimmon-executor', accept: '*/*', connection: 'close' },
    };
    // Without the VIM's own CAs: reachability, not trust. The probe sends no
    // credentials, and a VIM with a private CA must not look down because this
    // host lacks that CA. With them: only those CAs, and the host name checked.
    if (target.scheme === 'https') {
      // secureContext reaches tls.connect through the agent like the other TLS options; the
      // request's type leaves it out. One context per CA set, not one parse of the PEM per attempt.
      if (target.trust) (options as tls.ConnectionOptions).secureContext = target.trust.context;
      else options.rejectUnauthorized = false;
    }
    const request = (target.scheme === 'https' ? https : http).request(target.href, options);
    request.once('response', (response) => {
      a.settle(okResult);
      response.destroy();
    });
    request.on('error', (err) => a.settle(failure(err)));
    a.release = () => request.destroy();
    request.end();
  });
}

const checkedOk: AttemptResult = Object.freeze({ ok: true, credentialsChecked: true });

/**
 * PROBE_KIND_AUTH: an HTTP GET of auth_url as the http probe makes, except
 * when an authentication is due (the first round, then at most once per
 * report_interval): then the authentication is the attempt. Its refusal
 * (credentials, or the certificate of an endpoint the secrets would go to)
 * is repeated by every round until an authentication succeeds, so that a VIM
 * that refused stays UNREACHABLE with its reason between two checks.
 */
async function authenticating(guard: Guard, target: ProbeTarget, timeoutMs: number, signal: AbortSignal): Promise<AttemptResult> {
  const check = target.auth;
  if (!check) return { ok: false, error: 'no credentials to authenticate with', final: true };
  if (!check.take()) {
    const reached = await httpGet(guard, target, timeoutMs, signal);
    return reached.ok && check.refusal ? check.refusal : reached;
  }
  const denied = deniedLiteral(guard, target);
  if (denied) return denied;
  const outcome = await authenticate(check, target, { lookup: guard.lookup, deny: guard.deny, trust: target.trust }, timeoutMs, signal);
  if (signal.aborted) return abortedResult;
  switch (outcome.kind) {
    case 'accepted':
      check.refusal = undefined;
      return checkedOk;
    case 'rejected':
      check.refusal = Object.freeze({ ok: false, error: outcome.error, final: true, reason: 'CREDENTIALS_REJECTED' as const });
      return { ...check.refusal, credentialsChecked: true };
    case 'inconclusive':
      // It answered: reachable, and nothing learnt of the credentials.
      return check.refusal ? { ...check.refusal, credentialsChecked: true } : checkedOk;
    case 'failed': {
      const failed = failure(outcome.error);
      if (failed.reason === 'CERTIFICATE_REJECTED') check.refusal = Object.freeze(failed);
      return { ...failed, credentialsChecked: true };
    }
  }
}

export const pingMissingError = 'ping command not found (install iputils-ping)';

/**
 * One ICMP echo through the system's `ping` (it holds the raw-socket privilege;
 * we need none). With a deny list a name is resolved here first and ping is
 * given the checked address, never the name.
 */
function icmp(guard: Guard, target: AuthUrl, timeoutMs: number, signal: AbortSignal): Promise<AttemptResult> {
  const denied = deniedLiteral(guard, target);
  if (denied) return Promise.resolve(denied);
  const lookup = guard.lookup;
  if (lookup === undefined || net.isIP(target.host)) return attempt(timeoutMs, signal, (a) => ping(a, target.host, timeoutMs));
  return attempt(timeoutMs, signal, (a) => {
    lookup(target.host, { all: true }, (err, addresses) => {
      if (a.settled) return;
      if (err) return a.settle(failure(err));
      const first = (addresses as LookupAddress[])[0];
      if (!first) return a.settle({ ok: false, error: `${target.host} has no address` });
      ping(a, first.address, timeoutMs);
    });
  });
}

function ping(a: Attempt, address: string, timeoutMs: number): void {
  // -W takes whole seconds on older iputils; our own timer enforces timeoutMs.
  const args = ['-n', '-c', '1', '-W', String(Math.max(1, Math.ceil(timeoutMs / 1000)))];
  if (net.isIPv6(address)) args.unshift('-6');
  args.push('--', address);
  const child = spawn('ping', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    if (stderr.length < 200) stderr += chunk;
  });
  child.once('error', (err: NodeJS.ErrnoException) => {
    a.settle(err.code === 'ENOENT' ? { ok: false, error: pingMissingError, final: true } : { ok: false, error: describe(err) });
  });
  child.once('close', (code) => {
    if (code === 0) a.settle(okResult);
    else a.settle({ ok: false, error: stderr.trim().split('\n')[0] || `no echo reply (ping exited with ${code})` });
  });
  a.release = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
}
