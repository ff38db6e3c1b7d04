// What this machine offers, decided synchronously while a test file loads (ava
// wants every test declared before the file's first turn ends), so that a test
// whose tool is missing is skipped with its reason instead of passing unrun.
import { spawnSync } from 'node:child_process';

function nodeSays(script: string, timeoutMs = 5_000): boolean {
  return spawnSync(process.execPath, ['-e', script], { timeout: timeoutMs, stdio: 'ignore' }).status === 0;
}

/** Whether a TCP connection to host:port is accepted within timeoutMs. */
export function canConnect(host: string, port: number, timeoutMs = 2_000): boolean {
  return nodeSays(
    `const s = require('net').connect(${port}, ${JSON.stringify(host)}, () => process.exit(0));
     s.on('error', () => process.exit(1)); setTimeout(() => process.exit(1), ${timeoutMs});`,
    timeoutMs + 3_000,
  );
}

/** Whether this machine can listen on an address (e.g. ::1). */
export function canListen(host: string): boolean {
  return nodeSays(
    `require('net').createServer().on('error', () => process.exit(1)).listen(0, ${JSON.stringify(host)}, () => process.exit(0));`,
  );
}

/** RabbitMQ's host and port from an amqp:// URL. */
export function amqpEndpoint(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(u.port || 5672) };
}
