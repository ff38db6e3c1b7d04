// A real HAProxy (Debian package `haproxy`) as a child process, configured from
// the shipped template deploy/haproxy.cfg, so tests and benchmarks exercise the
// very file operators deploy. Also used by bench/conductor-throughput.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './targets.js';

export const deployHaproxyConfig = fileURLToPath(new URL('../../deploy/haproxy.cfg', import.meta.url));

/** The haproxy binary, or undefined when it is not installed. */
export function findHaproxy(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = path.join(dir, 'haproxy');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export const haproxyMissingMessage =
  'haproxy is not installed (Debian: apt-get install -y haproxy); CI installs it, so this test fails there instead of skipping';

export interface ConductorProxyOptions {
  /** Exactly the two server lines of the template. */
  conductors: [string, string];
  /** Bind host (default 127.0.0.1). */
  host?: string;
  startTimeoutMs?: number;
}

export interface ServerStat {
  proxy: string;
  server: string;
  /** UP, DOWN, "UP 1/2", "DOWN 1/2", MAINT… */
  status: string;
  checkStatus: string;
  /** Requests answered with HTTP 2xx (gRPC answers, errors included). */
  responses2xx: number;
  /** Streams sent to this server. */
  sessions: number;
}

export interface RunningHaproxy {
  /** host:port executors would use. */
  address: string;
  pid: number;
  /** `show stat` for the conductor servers. */
  serverStats(): Promise<ServerStat[]>;
  /** Polls `show stat` until predicate holds; throws with the last stats after timeoutMs. */
  waitForServers(predicate: (stats: ServerStat[]) => boolean, timeoutMs?: number): Promise<ServerStat[]>;
  /** What HAProxy wrote (alerts, server up/down). */
  output(): string;
  stop(): Promise<void>;
}

/** Starts HAProxy with deploy/haproxy.cfg in front of two conductors; resolves once it accepts connections. */
export async function startConductorProxy(options: ConductorProxyOptions): Promise<RunningHaproxy> {
  const binary = findHaproxy();
  if (!binary) throw new Error(haproxyMissingMessage);
  const host = options.host ?? '127.0.0.1';
  // A free port may be taken by another test before haproxy binds it: then haproxy exits and we try another.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(binary, host, await freePort(host), options);
    } catch (err) {
      if (attempt >= 3 || !/cannot bind|Address already in use/i.test(String(err))) throw err;
    }
  }
}

async function startOnce(binary: string, host: string, port: number, options: ConductorProxyOptions): Promise<RunningHaproxy> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-haproxy-'));
  const statsSocket = path.join(dir, 'stats.sock');
  const env = {
    ...process.env,
    VIMMON_LB_BIND: `${host}:${port}`,
    VIMMON_CONDUCTOR_1: options.conductors[0],
    VIMMON_CONDUCTOR_2: options.conductors[1],
    VIMMON_HAPROXY_STATS_SOCKET: statsSocket,
  };
  // -db: stay in the foreground, so this process owns it and sees it exit.
  const child = spawn(binary, ['-db', '-f', deployHaproxyConfig], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await terminate(child, exited);
      rmSync(dir, { recursive: true, force: true });
    })());

  try {
    // The port alone could be another process's: haproxy is up once its stats socket exists too.
    await waitForListening(
      host,
      port,
      exited,
      options.startTimeoutMs ?? 5_000,
      () => output,
      () => existsSync(statsSocket),
    );
  } catch (err) {
    await stop();
    throw err;
  }

  const serverStats = async () =>
    parseStats(await adminCommand(statsSocket, 'show stat')).filter((s) => s.proxy === 'conductors' && s.server !== 'BACKEND');
  return {
    address: `${host}:${port}`,
    pid: child.pid!,
    serverStats,
    async waitForServers(predicate, timeoutMs = 10_000) {
      const until = Date.now() + timeoutMs;
      let last: ServerStat[] = [];
      while (Date.now() < until) {
        last = await serverStats();
        if (predicate(last)) return last;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`haproxy servers not as expected after ${timeoutMs}ms: ${JSON.stringify(last)}\n${output}`);
    },
    output: () => output,
    stop,
  };
}

async function terminate(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
  await exited;
  clearTimeout(timer);
}

async function waitForListening(
  host: string,
  port: number,
  exited: Promise<number | null>,
  timeoutMs: number,
  output: () => string,
  ready: () => boolean,
): Promise<void> {
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (exitCode !== undefined) throw new Error(`haproxy exited with code ${exitCode} before listening:\n${output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host, port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok && ready()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`haproxy did not listen on ${host}:${port} within ${timeoutMs}ms:\n${output()}`);
}

function adminCommand(socketPath: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString()));
    socket.once('error', reject);
    socket.once('end', () => resolve(text));
    socket.once('connect', () => socket.write(`${command}\n`));
  });
}

function parseStats(csv: string): ServerStat[] {
  const lines = csv.split('\n').filter((l) => l.length > 0);
  const header = lines.shift()?.replace(/^# /, '').split(',') ?? [];
  const col = (name: string) => header.indexOf(name);
  return lines.map((line) => {
    const cells = line.split(',');
    return {
      proxy: cells[col('pxname')],
      server: cells[col('svname')],
      status: cells[col('status')],
      checkStatus: cells[col('check_status')],
      responses2xx: Number(cells[col('hrsp_2xx')] || 0),
      sessions: Number(cells[col('stot')] || 0),
    };
  });
}

/**
 * The HTTP/2 bytes deploy/haproxy.cfg sends as its gRPC health check, built in
 * code so that a test can prove the template's hex matches what it says.
 */
export function grpcHealthCheckFrames(
  service: string,
  authority = 'vimmon-conductor',
): { preface: string; settings: string; headers: string; data: string } {
  const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
    const head = Buffer.alloc(9);
    head.writeUIntBE(payload.length, 0, 3);
    head[3] = type;
    head[4] = flags;
    head.writeUInt32BE(stream, 5);
    return Buffer.concat([head, payload]);
  };
  // HPACK string literal without Huffman coding; 7-bit length prefix.
  const literal = (s: string) => {
    const bytes = Buffer.from(s);
    if (bytes.length > 126) throw new Error('literal too long for a one-byte length');
    return Buffer.concat([Buffer.from([bytes.length]), bytes]);
  };
  const block = Buffer.concat([
    Buffer.from([0x83]), // :method POST (static index 3)
    Buffer.from([0x86]), // :scheme http (static index 6)
    Buffer.from([0x04]),
    literal('/grpc.health.v1.Health/Check'), // :path, literal without indexing (name index 4)
    Buffer.from([0x01]),
    literal(authority), // :authority (name index 1)
    Buffer.from([0x0f, 0x10]),
    literal('application/grpc'), // content-type (name index 31)
    Buffer.from([0x00]),
    literal('te'),
    literal('trailers'), // te, new name
  ]);
  const message = Buffer.concat([Buffer.from([0x0a]), literal(service)]); // HealthCheckRequest.service = field 1
  const grpcFrame = Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]);
  return {
    preface: Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n').toString('hex'),
    settings: frame(0x4, 0, 0, Buffer.alloc(0)).toString('hex'),
    headers: frame(0x1, 0x4, 1, block).toString('hex'),
    data: frame(0x0, 0x1, 1, grpcFrame).toString('hex'),
  };
}
