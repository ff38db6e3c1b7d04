import { spawnSync } from 'node:child_process';
import { canListen } from './support/preflight.js';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { parseAuthUrl } from '../common/auth-url.js';
import { httpProbe, icmpProbe, pingMissingError, probeRound, tcpProbe, type Probe } from '../executor/probe.js';

const never = new AbortController().signal;

async function listen(t: ExecutionContext, server: net.Server, host = '127.0.0.1'): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

/** A port nothing listens on: bound once, then closed. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// Whether this machine has ::1 is decided at load time: the IPv6 tests are skipped, with the reason, where it has not.
const ipv6 = canListen('::1');
const ipv6Test = ipv6 ? test : test.skip;
if (!ipv6) console.warn('probe: IPv6 tests skipped — this machine has no ::1');

test('tcp: an open port is reachable, with its latency', async (t) => {
  let accepted = 0;
  const port = await listen(
    t,
    net.createServer(() => accepted++),
  );
  const result = await probeRound(tcpProbe, parseAuthUrl(`http://127.0.0.1:${port}/v3`), { count: 1, timeoutMs: 1000 }, never);
  t.true(result.ok);
  t.is(result.attempts, 1);
  t.is(result.successes, 1);
  t.true(result.latencyMs >= 0 && result.latencyMs < 1000);
  t.is(result.error, '');
  await new Promise((r) => setTimeout(r, 50));
  t.is(accepted, 1);
});

test('tcp: a closed port fails every attempt of the round with connection refused', async (t) => {
  const port = await closedPort();
  const result = await probeRound(tcpProbe, parseAuthUrl(`https://127.0.0.1:${port}/`), { count: 3, timeoutMs: 1000 }, never);
  t.false(result.ok);
  t.is(result.attempts, 3);
  t.is(result.successes, 0);
  t.regex(result.error, /ECONNREFUSED/);
});

test('tcp: the port defaults by scheme (80 for http, 443 for https)', (t) => {
  t.is(parseAuthUrl('http://192.0.2.1/v3').port, 80);
  t.is(parseAuthUrl('https://192.0.2.1/v3').port, 443);
});

ipv6Test('tcp: an IPv6 literal target is probed on ::1', async (t) => {
  if (!ipv6) return t.fail('no ::1 on this machine');
  const port = await listen(t, net.createServer(), '::1');
  const ok = await tcpProbe(parseAuthUrl(`https://[::1]:${port}/v3`), 1000, never);
  t.true(ok.ok, ok.error);
  const closed = await closedPort();
  const refused = await tcpProbe(parseAuthUrl(`https://[::1]:${closed}/v3`), 1000, never);
  t.false(refused.ok);
});

test('an aborted round ends at once', async (t) => {
  const hanging = await listen(
    t,
    http.createServer(() => {}),
  );
  const controller = new AbortController();
  const started = performance.now();
  const round = probeRound(httpProbe, parseAuthUrl(`http://127.0.0.1:${hanging}/`), { count: 1, timeoutMs: 5000 }, controller.signal);
  setTimeout(() => controller.abort(), 50);
  const result = await round;
  t.false(result.ok);
  t.is(result.error, 'aborted');
  t.true(performance.now() - started < 1000);
});

test('http: any answer is reachable, a 500 included', async (t) => {
  let requests = 0;
  const port = await listen(
    t,
    http.createServer((_req, res) => {
      requests++;
      res.statusCode = 500;
      res.end('internal error');
    }),
  );
  const result = await probeRound(httpProbe, parseAuthUrl(`http://127.0.0.1:${port}/v3`), { count: 2, timeoutMs: 1000 }, never);
  t.true(result.ok);
  t.is(result.attempts, 1);
  t.is(requests, 1);
});

test('http: a redirect is an answer and is not followed', async (t) => {
  const paths: string[] = [];
  const port = await listen(
    t,
    http.createServer((req, res) => {
      paths.push(req.url ?? '');
      res.writeHead(302, { location: '/elsewhere' });
      res.end();
    }),
  );
  const result = await httpProbe(parseAuthUrl(`http://127.0.0.1:${port}/v3`), 1000, never);
  t.true(result.ok);
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(paths, ['/v3']);
});

test('http: a big body is not read', async (t) => {
  let written = 0;
  let closed = false;
  const port = await listen(
    t,
    http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024);
      const pump = () => {
        while (!closed && written < 512 * 1024 * 1024) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      res.on('close', () => (closed = true));
      pump();
    }),
  );
  const started = performance.now();
  const result = await httpProbe(parseAuthUrl(`http://127.0.0.1:${port}/`), 2000, never);
  t.true(result.ok);
  t.true(performance.now() - started < 1000);
  await new Promise((r) => setTimeout(r, 200));
  t.true(closed, 'the probe closed the connection');
  t.true(written < 64 * 1024 * 1024, `server wrote ${written} bytes`);
});

test('http: a server that never answers fails at the timeout', async (t) => {
  const port = await listen(
    t,
    http.createServer(() => {}),
  );
  const started = performance.now();
  const result = await probeRound(httpProbe, parseAuthUrl(`http://127.0.0.1:${port}/`), { count: 2, timeoutMs: 150 }, never);
  const elapsed = performance.now() - started;
  t.false(result.ok);
  t.is(result.attempts, 2);
  t.regex(result.error, /no answer within 150ms/);
  t.true(elapsed >= 290 && elapsed < 1500, `took ${elapsed}ms`);
});

test('http: a closed port is a failure', async (t) => {
  const port = await closedPort();
  const result = await httpProbe(parseAuthUrl(`http://127.0.0.1:${port}/`), 1000, never);
  t.false(result.ok);
  t.regex(result.error ?? '', /ECONNREFUSED/);
});

ipv6Test('http: an IPv6 literal URL is fetched on ::1', async (t) => {
  if (!ipv6) return t.fail('no ::1 on this machine');
  let host = '';
  const port = await listen(
    t,
    http.createServer((req, res) => {
      host = req.headers.host ?? '';
      res.end();
    }),
    '::1',
  );
  const result = await httpProbe(parseAuthUrl(`http://[::1]:${port}/v3`), 1000, never);
  t.true(result.ok, result.error);
  t.is(host, `[::1]:${port}`);
});

test('round: stops at the first successful attempt', async (t) => {
  let calls = 0;
  const flaky: Probe = async () => (++calls < 3 ? { ok: false, error: `failure ${calls}` } : { ok: true });
  const result = await probeRound(flaky, parseAuthUrl('http://192.0.2.1/'), { count: 5, timeoutMs: 100 }, never);
  t.true(result.ok);
  t.is(result.attempts, 3);
  t.is(calls, 3);
});

test('round: a final failure ends the round early with its reason', async (t) => {
  let calls = 0;
  const missing: Probe = async () => {
    calls++;
    return { ok: false, error: pingMissingError, final: true };
  };
  const result = await probeRound(missing, parseAuthUrl('http://192.0.2.1/'), { count: 3, timeoutMs: 100 }, never);
  t.false(result.ok);
  t.is(calls, 1);
  t.is(result.error, 'ping command not found (install iputils-ping)');
});

const havePing = spawnSync('ping', ['-V']).error === undefined;

// Decided at load time: where ping is absent and this is not CI, skipped with the reason; in CI it fails.
const pingTest = havePing || process.env.CI ? test.serial : test.skip;
if (!havePing && !process.env.CI) console.warn('probe: icmp test skipped — ping is not installed (apt-get install -y iputils-ping)');

pingTest('icmp: 127.0.0.1 answers ping', async (t) => {
  if (!havePing) return t.fail('ping is not installed (apt-get install -y iputils-ping)');
  const result = await probeRound(icmpProbe, parseAuthUrl('https://127.0.0.1:5000/v3'), { count: 1, timeoutMs: 2000 }, never);
  t.true(result.ok, result.error);
});

// PATH is process-wide: serial, so that no other test spawns ping meanwhile.
test.serial('icmp: a missing ping command fails the round with a clear reason', async (t) => {
  const path = process.env.PATH;
  process.env.PATH = '/nonexistent';
  try {
    const result = await probeRound(icmpProbe, parseAuthUrl('https://127.0.0.1/'), { count: 3, timeoutMs: 500 }, never);
    t.false(result.ok);
    t.is(result.attempts, 1);
    t.is(result.error, pingMissingError);
  } finally {
    process.env.PATH = path;
  }
});
