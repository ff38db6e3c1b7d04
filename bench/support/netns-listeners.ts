// Run inside the packet-drop namespace (by bench/support/packet-drop.ts): opens
// COUNT listeners of KIND (tcp or http) on ADDRESS, prints their ports as one
// JSON line, and stays up until its stdin closes.
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';

const count = Number(process.env.COUNT);
const kind = process.env.KIND;
const address = process.env.ADDRESS ?? '';
if (!Number.isInteger(count) || count < 1 || count > 1_000) throw new Error(`COUNT must be 1..1000, got ${process.env.COUNT}`);
if (kind !== 'tcp' && kind !== 'http') throw new Error(`KIND must be tcp or http, got ${kind}`);

const servers: Server[] = [];
const ports: number[] = [];
for (let i = 0; i < count; i++) {
  const server: Server =
    kind === 'tcp'
      ? createServer((s) => {
          s.on('error', () => {});
          s.end();
        })
      : createHttpServer((_req, res) => res.end('{}'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, address, () => resolve());
  });
  servers.push(server);
  ports.push((server.address() as { port: number }).port);
}
process.stdout.write(`${JSON.stringify({ ports })}\n`);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
