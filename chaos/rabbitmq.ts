// A RabbitMQ node of the suite's own (the Debian rabbitmq-server, run as root
// with its own node name, ports, data and log folders, no plugins), so it can be
// stopped and started while the machine's shared node keeps serving others.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../test/support/targets.js';

const run = promisify(execFile);
const binDir = '/usr/lib/rabbitmq/bin';

export interface ChaosRabbitmq {
  /** amqp://guest:guest@127.0.0.1:PORT */
  readonly url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the node and removes its folder. */
  destroy(): Promise<void>;
}

/** Whether a private node can be started here at all. */
export function rabbitmqAvailable(): boolean {
  return existsSync(path.join(binDir, 'rabbitmq-server')) && existsSync(path.join(binDir, 'rabbitmqctl'));
}

export async function startChaosRabbitmq(log: (line: string) => void): Promise<ChaosRabbitmq> {
  const root = mkdtempSync(path.join(tmpdir(), 'vimmon-chaos-rabbitmq-'));
  for (const dir of ['home', 'mnesia', 'log']) mkdirSync(path.join(root, dir));
  // No plugins: the shared node's management plugin would otherwise be started on its fixed port.
  writeFileSync(path.join(root, 'enabled_plugins'), '[].\n');
  const node = `vimmon-chaos-${randomBytes(4).toString('hex')}@localhost`;
  const port = await freePort();
  const env = {
    PATH: process.env.PATH,
    // Erlang makes the distribution cookie in HOME; rabbitmqctl reads the same one.
    HOME: path.join(root, 'home'),
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(await freePort()),
    RABBITMQ_MNESIA_BASE: path.join(root, 'mnesia'),
    RABBITMQ_LOG_BASE: path.join(root, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: path.join(root, 'enabled_plugins'),
    RABBITMQ_CONFIG_FILE: path.join(root, 'rabbitmq'),
    RABBITMQ_PID_FILE: path.join(root, 'rabbitmq.pid'),
  };
  const ctl = (args: string[], timeoutMs: number) =>
    run(path.join(binDir, 'rabbitmqctl'), ['-n', node, ...args], { env, timeout: timeoutMs });
  let child: ChildProcess | undefined;
  const start = async () => {
    // A group of its own, as the roles: a Ctrl-C reaches the suite alone.
    const c = spawn(path.join(binDir, 'rabbitmq-server'), [], { cwd: root, env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    child = c;
    let stderr = '';
    c.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2_000)));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`rabbitmq-server exited with ${c.exitCode}: ${stderr}`);
      try {
        await ctl(['await_startup', '-t', '2'], 5_000);
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`the suite's RabbitMQ node did not start within 60 s: ${stderr}`);
      }
    }
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    await ctl(['stop'], 30_000).catch((err) => log(`rabbitmqctl stop failed (${String(err)}): killing the node`));
    const pidFile = env.RABBITMQ_PID_FILE;
    const timer = setTimeout(() => {
      const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : NaN;
      if (Number.isInteger(pid) && pid > 0) process.kill(pid, 'SIGKILL');
      c.kill('SIGKILL');
    }, 15_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await start();
  } catch (err) {
    await stop().catch(() => {});
    rmSync(root, { recursive: true, force: true });
    throw err;
  }
  return {
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    stop,
    start,
    async destroy() {
      await stop().catch(() => {});
      rmSync(root, { recursive: true, force: true });
    },
  };
}
