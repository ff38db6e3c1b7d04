// Probes: can this VIM's auth_url be reached? One attempt is bounded by the
// policy's timeout; a round is up to `count` attempts and succeeds at the first
// successful one. A probe never throws: a failure is a result with a reason.
import { spawn } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { AuthUrl } from '../common/auth-url.js';
import type { ProbeName } from '../common/monitor-policy.js';

export interface AttemptResult {
  ok: boolean;
  /** Why the attempt failed. */
  error?: string;
  /** No later attempt of this round can do better (e.g. the ping command is missing). */
  final?: boolean;
}

/** One attempt against a target, settled within timeoutMs or when signal aborts. */
export type Probe = (target: AuthUrl, timeoutMs: number, signal: AbortSignal) => Promise<AttemptResult>;

export interface RoundResult {
  ok: boolean;
  attempts: number;
  successes: number;
  /** Time to the first successful attempt, or of the whole round when none succeeded. */
  latencyMs: number;
  /** Why the last attempt failed, when the round failed. */
  error: string;
}

export interface RoundOptions {
  count: number;
  timeoutMs: number;
}

export async function probeRound(probe: Probe, target: AuthUrl, { count, timeoutMs }: RoundOptions, signal: AbortSignal): Promise<RoundResult> {
  const started = performance.now();
  let error = '';
  let attempts = 0;
  while (attempts < count && !signal.aborted) {
    attempts++;
    const attemptStarted = performance.now();
    const result = await probe(target, timeoutMs, signal);
    if (result.ok) return { ok: true, attempts, successes: 1, latencyMs: performance.now() - attemptStarted, error: '' };
    error = result.error ?? 'failed';
    if (result.final) break;
  }
  return { ok: false, attempts, successes: 0, latencyMs: performance.now() - started, error: signal.aborted ? 'aborted' : error };
}

export const probes: Readonly<Record<ProbeName, Probe>> = {
  tcp: tcpProbe,
  http: httpProbe,
  icmp: icmpProbe,
};

/**
 * Settles an attempt once: on the first of the probe's own outcome, the
 * timeout, or the abort, and then releases the timer and the abort listener.
 */
function attempt(
  timeoutMs: number,
  signal: AbortSignal,
  body: (settle: (r: AttemptResult) => void) => () => void,
): Promise<AttemptResult> {
  if (signal.aborted) return Promise.resolve({ ok: false, error: 'aborted', final: true });
  return new Promise((resolve) => {
    let settled = false;
    let cleanup: (() => void) | undefined;
    const settle = (result: AttemptResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      cleanup?.();
      resolve(result);
    };
    const onAbort = () => settle({ ok: false, error: 'aborted', final: true });
    const timer = setTimeout(() => settle({ ok: false, error: `no answer within ${timeoutMs}ms` }), timeoutMs);
    signal.addEventListener('abort', onAbort, { once: true });
    const release = body(settle);
    if (settled) release();
    else cleanup = release;
  });
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.message || String(err);
}

/** A TCP connection to auth_url's host and port (80/443 by scheme when the URL names none). */
export function tcpProbe(target: AuthUrl, timeoutMs: number, signal: AbortSignal): Promise<AttemptResult> {
  return attempt(timeoutMs, signal, (settle) => {
    let connected = false;
    const socket = net.connect({ host: target.host, port: target.port });
    socket.once('connect', () => {
      connected = true;
      settle({ ok: true });
    });
    socket.on('error', (err) => settle({ ok: false, error: describe(err) }));
    return () => {
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
 * is reachable; only a connection error or no answer within the timeout is a
 * failure. Redirects are not followed and the body is not read.
 */
export function httpProbe(target: AuthUrl, timeoutMs: number, signal: AbortSignal): Promise<AttemptResult> {
  return attempt(timeoutMs, signal, (settle) => {
    const options: https.RequestOptions = {
      method: 'GET',
      agent: false,
      headers: { 'user-agent': 'vimmon-executor', accept: '*/*', connection: 'close' },
    };
    // Reachability, not trust: the probe sends no credentials, and a VIM with a
    // private CA must not look down because this host lacks that CA.
    if (target.scheme === 'https') options.rejectUnauthorized = false;
    const request = (target.scheme === 'https' ? https : http).request(target.href, options);
    request.once('response', (response) => {
      settle({ ok: true });
      response.destroy();
    });
    request.on('error', (err) => settle({ ok: false, error: describe(err) }));
    request.end();
    return () => request.destroy();
  });
}

export const pingMissingError = 'ping command not found (install iputils-ping)';

/** One ICMP echo through the system's `ping` (it holds the raw-socket privilege; we need none). */
export function icmpProbe(target: AuthUrl, timeoutMs: number, signal: AbortSignal): Promise<AttemptResult> {
  return attempt(timeoutMs, signal, (settle) => {
    // -W takes whole seconds on older iputils; our own timer enforces timeoutMs.
    const args = ['-n', '-c', '1', '-W', String(Math.max(1, Math.ceil(timeoutMs / 1000)))];
    if (net.isIPv6(target.host)) args.unshift('-6');
    args.push('--', target.host);
    const child = spawn('ping', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      if (stderr.length < 200) stderr += chunk;
    });
    child.once('error', (err: NodeJS.ErrnoException) => {
      settle(err.code === 'ENOENT' ? { ok: false, error: pingMissingError, final: true } : { ok: false, error: describe(err) });
    });
    child.once('close', (code) => {
      if (code === 0) settle({ ok: true });
      else settle({ ok: false, error: stderr.trim().split('\n')[0] || `no echo reply (ping exited with ${code})` });
    });
    return () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
  });
}
