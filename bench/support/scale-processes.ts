// CPU and memory of processes from /proc, for bench/scale.ts: a role child with
// its descendants (tsx may run helpers of its own), and PostgreSQL's processes
// (the backends of one database, and every process of the server).
import { readdirSync, readFileSync } from 'node:fs';
import { cpuMs } from './conductor-load.js';

/** The process and its descendants; empty when it is gone. */
export function processTree(pid: number): number[] {
  try {
    const children = readdirSync(`/proc/${pid}/task`).flatMap((task) =>
      readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
    );
    return [pid, ...children.flatMap(processTree)];
  } catch {
    return [];
  }
}

/** utime + stime of the process and its descendants, ms. */
export function treeCpuMs(pid: number): number {
  return processTree(pid).reduce((sum, p) => sum + cpuMs(p), 0);
}

/** Resident memory of the process and its descendants, MiB (0 when gone). */
export function treeRssMiB(pid: number): number {
  let kib = 0;
  for (const p of processTree(pid)) {
    try {
      kib += Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // exited meanwhile
    }
  }
  return kib / 1024;
}

export interface PostgresProcess {
  pid: number;
  /** The process title: "postgres: 15/main: USER DATABASE HOST(PORT) STATE" for a backend. */
  title: string;
}

/** Every process of the PostgreSQL server on this machine (command name `postgres`). */
export function postgresProcesses(): PostgresProcess[] {
  const out: PostgresProcess[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== 'postgres') continue;
      out.push({ pid: Number(entry), title: readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ').trim() });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** CPU ms by pid now, for a later cpuSince. */
export function cpuReading(pids: number[]): Map<number, number> {
  return new Map(pids.map((pid) => [pid, cpuMs(pid)]));
}

/**
 * CPU spent since `before` by the processes alive now: a process that started
 * meanwhile counts from zero; one that exited meanwhile is lost (its share is
 * not in /proc any more), so the figure is a lower bound when processes churn.
 */
export function cpuSince(before: Map<number, number>, pidsNow: number[]): number {
  return pidsNow.reduce((sum, pid) => sum + Math.max(0, cpuMs(pid) - (before.get(pid) ?? 0)), 0);
}
