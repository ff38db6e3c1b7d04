// The executor alone in a process of its own, for bench/executor-scale.ts:
// prints {"address","pid"} once listening, answers a "stats" line on stdin with
// one JSON line of counters, and stops cleanly when stdin closes or on SIGTERM.
import { createInterface } from 'node:readline';
import { getHeapSpaceStatistics } from 'node:v8';
import { createLogger } from '../../common/logger.js';
import { startExecutor } from '../../executor/main.js';

const conductorTarget = process.argv[2];
if (!conductorTarget) {
  process.stderr.write('usage: executor-child.ts <conductor target>\n');
  process.exit(2);
}

const executor = await startExecutor({
  logger: createLogger({ level: 'warn' }),
  address: '127.0.0.1:0',
  conductorTarget,
});
process.stdout.write(`${JSON.stringify({ address: executor.address, pid: process.pid })}\n`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await executor.stop();
  process.exit(0);
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line.trim() === 'stats') {
    const memory = process.memoryUsage();
    const spaces = Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, s.space_size]));
    const heap = {
      heapUsed: memory.heapUsed,
      heapTotal: memory.heapTotal,
      newSpace: spaces.new_space ?? 0,
      oldSpace: spaces.old_space ?? 0,
    };
    process.stdout.write(`${JSON.stringify({ ...executor.stats(), ...heap })}\n`);
  }
});
lines.on('close', () => void stop());
process.on('SIGTERM', () => void stop());
