// Real endpoints for probes: a TCP listener that can be closed and reopened on
// the same port (a VIM going down and coming back), and an HTTP server.
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface TcpTarget {
  port: number;
  url: string;
  up: boolean;
  close(): Promise<void>;
  reopen(): Promise<void>;
}

/** The lowest port the kernel hands out to bind(0) and connect() (Linux; 32768 when unknown). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 2_000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

/** listen() on a random port below the ephemeral range, another one while that one is taken. */
async function belowEphemeral(listen: (port: number) => Promise<number>): Promise<number> {
  const low = Math.max(1_024, ephemeralLow() - 12_000);
  const high = ephemeralLow() - 1;
  for (let tries = 0; ; tries++) {
    try {
      return await listen(low + Math.floor(Math.random() * (high - low + 1)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || tries >= 100) throw err;
    }
  }
}

/**
 * A TCP target that is closed and reopened listens below the ephemeral range: while it is
 * closed, a port of that range may be handed to any other listener or outgoing connection
 * on the machine (other test files run beside this one), and a probe would find that one
 * and call the closed VIM reachable.
 */
export async function openTcpTarget(host = '127.0.0.1'): Promise<TcpTarget> {
  let server: Server | undefined;
  const sockets = new Set<Socket>();
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      const s = createServer((sock) => {
        sockets.add(sock);
        sock.on('close', () => sockets.delete(sock));
        sock.on('error', () => {});
        sock.end();
      });
      s.once('error', reject);
      s.listen(port, host, () => {
        server = s;
        resolve((s.address() as { port: number }).port);
      });
    });
  const port = await belowEphemeral(listen);
  const target: TcpTarget = {
    port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/v3`,
    up: true,
    async close() {
      if (!server) return;
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server!.close(() => r()));
      server = undefined;
      target.up = false;
    },
    async reopen() {
      await listen(port);
      target.up = true;
    },
  };
  return target;
}

export async function openHttpTarget(status = 200): Promise<{ url: string; hits: number; close(): Promise<void> }> {
  const state = { hits: 0 };
  const server: HttpServer = createHttpServer((_req, res) => {
    state.hits++;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end('{"version":{"id":"v3.14"}}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/identity/v3`,
    get hits() {
      return state.hits;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/**
 * A port nothing listens on, for a test that counts on a refused connection: below the ephemeral
 * range, for the reason openTcpTarget's is (a port freePort() gives back may be handed to another
 * test's listener or connection, and then answers).
 */
export async function closedPort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  const port = await belowEphemeral(
    (candidate) =>
      new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen(candidate, host, () => resolve(candidate));
      }),
  );
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A port that was free a moment ago (for a process that must be told its port: HAProxy, `vimmon all`). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
