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

const abortedResult: AttemptResult = Object.freeze({ ok: false, error: 'aborted', final: true });
const okResult: AttemptResult = Object.freeze({ ok: true });

/**
 * One attempt, settled once: by the probe's own outcome, its timeout or the
 * abort, whichever comes first; then its timer, abort listener and connection
 * are released. A class rather than closures: thousands run every second.
 */
class Attempt {
  private settled = false;
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

/** A TCP connection to auth_url's host and port (80/443 by scheme when the URL names none). */
export function tcpProbe(target: AuthUrl, timeoutMs: number, signal: AbortSignal): Promise<AttemptResult> {
  return attempt(timeoutMs, signal, (a) => {
    const socket = net.connect({ host: target.host, port: target.port });
    let connected = false;
    socket.once('connect', () => {
      connected = true;
      a.settle(okResult);
    });
    socket.on('error', (err) => a.settle({ ok: false, error: describe(err) }));
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
 * is reachable; only a connection error or no answer within the timeout is a
 * failure. Redirects are not followed and the body is not read.
 */
export function httpProbe(target: AuthUrl, timeoutMs: number, signal: AbortSignal): Promise<AttemptResult> {
  return attempt(timeoutMs, signal, (a) => {
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
      a.settle(okResult);
      response.destroy();
    });
    request.on('error', (err) => a.settle({ ok: false, error: describe(err) }));
    a.release = () => request.destroy();
    request.end();
  });
}

export const pingMissingError = 'ping command not found (install iputils-ping)';

/** One ICMP echo through the system's `ping` (it holds the raw-socket privilege; we need none). */
export function icmpProbe(target: AuthUrl, timeoutMs: number, signal: AbortSignal): Promise<AttemptResult> {
  return attempt(timeoutMs, signal, (a) => {
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
      a.settle(err.code === 'ENOENT' ? { ok: false, error: pingMissingError, final: true } : { ok: false, error: describe(err) });
    });
    child.once('close', (code) => {
      if (code === 0) a.settle(okResult);
      else a.settle({ ok: false, error: stderr.trim().split('\n')[0] || `no echo reply (ping exited with ${code})` });
    });
    a.release = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
  });
}
