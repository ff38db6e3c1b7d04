// A PostgreSQL cluster of the suite's own (the Debian binaries, initdb in a
// temporary folder, run as user postgres), so it can be stopped and started
// again on the same port without touching the machine's shared server.
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../test/support/targets.js';

const run = promisify(execFile);

export type StopMode = 'fast' | 'immediate';

export interface ChaosPostgres {
  /** postgres://postgres@127.0.0.1:PORT/postgres (trust authentication, loopback only). */
  readonly serverUrl: string;
  readonly port: number;
  stop(mode: StopMode): Promise<void>;
  start(): Promise<void>;
  /** Stops the server (immediate) and removes its folder. */
  destroy(): Promise<void>;
}

function binDir(): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => existsSync(path.join(base, v, 'bin', 'pg_ctl')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) throw new Error(`no PostgreSQL binaries under ${base} (Debian: apt-get install -y postgresql)`);
  return path.join(base, versions[0]!, 'bin');
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  return {
    uid: Number((await run('id', ['-u', 'postgres'])).stdout.trim()),
    gid: Number((await run('id', ['-g', 'postgres'])).stdout.trim()),
  };
}

export async function startChaosPostgres(): Promise<ChaosPostgres> {
  const bin = binDir();
  const ids = await postgresIds();
  // User postgres must enter the folder; /tmp itself is world-traversable.
  const root = mkdtempSync(path.join(tmpdir(), 'vimmon-chaos-pg-'));
  chmodSync(root, 0o755);
  const dataDir = path.join(root, 'data');
  const socketDir = path.join(root, 'socket');
  const logFile = path.join(root, 'postgres.log');
  for (const dir of [dataDir, socketDir]) {
    mkdirSync(dir, { mode: 0o700 });
    chownSync(dir, ids.uid, ids.gid);
  }
  // pg_ctl, run as postgres, appends to the log in a folder of root's.
  writeFileSync(logFile, '');
  chownSync(logFile, ids.uid, ids.gid);
  const asPostgres = (file: string, args: string[]) =>
    run(path.join(bin, file), args, { uid: ids.uid, gid: ids.gid, env: { PATH: process.env.PATH, LC_ALL: 'C' } });
  await asPostgres('initdb', ['-D', dataDir, '--auth=trust', '--username=postgres', '--encoding=UTF8', '--locale=C', '--no-sync']);
  const port = await freePort();
  const options = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${socketDir} -c max_connections=150`;
  const start = async () => {
    try {
      await asPostgres('pg_ctl', ['-D', dataDir, '-o', options, '-l', logFile, '-w', '-t', '60', 'start']);
    } catch (err) {
      const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '';
      throw new Error(`the suite's PostgreSQL did not start (log ${logFile}):\n${tail}`, { cause: err });
    }
  };
  const running = () => existsSync(path.join(dataDir, 'postmaster.pid'));
  const stop = async (mode: StopMode) => {
    if (running()) await asPostgres('pg_ctl', ['-D', dataDir, '-m', mode, '-w', '-t', '60', 'stop']);
  };
  try {
    await start();
  } catch (err) {
    if (!process.env.CHAOS_KEEP_LOGS) rmSync(root, { recursive: true, force: true });
    throw err;
  }
  return {
    serverUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    stop,
    start,
    async destroy() {
      await stop('immediate').catch(() => {});
      rmSync(root, { recursive: true, force: true });
    },
  };
}
