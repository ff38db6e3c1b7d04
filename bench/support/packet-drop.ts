// Stages VIM targets whose packets can be dropped (no RST, no ICMP error): a
// network namespace joined to the root one by a veth pair on a /30, listeners
// inside it, and nftables rules inside it that drop a listener's packets on
// demand. Needs root, `ip` and `nft` (Debian nftables); `tc netem` is not
// available here. Everything is made under one fixed name prefix so leftovers
// of a crashed run are removed at the next start.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

const run = promisify(execFile);
const namespace = 'vimmon-bench-drop';
const hostLink = 'vmbdrop0';
const nsLink = 'vmbdrop1';
// A test-made /30 that only exists between this machine's root namespace and the namespace above.
export const hostAddress = '10.213.77.1';
export const targetAddress = '10.213.77.2';

// Absolute paths: under npm scripts node_modules/.bin comes first on PATH, and
// an npm package there (@vercel/nft) is also called `nft`.
function system(tool: string): string {
  const found = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'].map((dir) => `${dir}/${tool}`).find((file) => existsSync(file));
  if (!found)
    throw new Error(
      `${tool} not found in /usr/sbin, /sbin, /usr/bin or /bin (Debian: apt-get install -y ${tool === 'ip' ? 'iproute2' : 'nftables'})`,
    );
  return found;
}

async function sh(args: string[]): Promise<void> {
  await run(system(args[0]!), args.slice(1));
}

async function inNamespace(args: string[]): Promise<void> {
  await sh(['ip', 'netns', 'exec', namespace, system(args[0]!), ...args.slice(1)]);
}

/** Removes a namespace and veth of an earlier run, if any; deleting the namespace deletes its veth end and so the pair. */
export async function removeLeftovers(): Promise<void> {
  await sh(['ip', 'netns', 'del', namespace]).catch(() => {});
  await sh(['ip', 'link', 'del', hostLink]).catch(() => {});
}

export interface DroppableTargets {
  readonly address: string;
  readonly ports: readonly number[];
  /** Adds a drop rule for `port`; resolves once nft has returned (the rule is in force). */
  drop(port: number): Promise<void>;
  /** Adds a rule dropping every ICMP packet to the namespace (ping gets no echo reply). */
  dropIcmp(): Promise<void>;
  /** Stops the listeners and deletes the namespace and veth pair. */
  close(): Promise<void>;
}

/** `count` listeners of `kind` in the namespace; for 'icmp' none (ping needs only the address). */
export async function stageDroppableTargets(count: number, kind: 'tcp' | 'http' | 'icmp'): Promise<DroppableTargets> {
  await removeLeftovers();
  let child: ChildProcess | undefined;
  const close = async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.stdin?.end();
      child.kill('SIGTERM');
      await exited;
    }
    await removeLeftovers();
  };
  try {
    await sh(['ip', 'netns', 'add', namespace]);
    await inNamespace(['ip', 'link', 'set', 'lo', 'up']);
    await sh(['ip', 'link', 'add', hostLink, 'type', 'veth', 'peer', 'name', nsLink]);
    await sh(['ip', 'link', 'set', nsLink, 'netns', namespace]);
    await sh(['ip', 'addr', 'add', `${hostAddress}/30`, 'dev', hostLink]);
    await sh(['ip', 'link', 'set', hostLink, 'up']);
    await inNamespace(['ip', 'addr', 'add', `${targetAddress}/30`, 'dev', nsLink]);
    await inNamespace(['ip', 'link', 'set', nsLink, 'up']);
    await inNamespace(['nft', 'add', 'table', 'inet', 'filter']);
    await inNamespace(['nft', 'add', 'chain', 'inet', 'filter', 'input', '{ type filter hook input priority 0; policy accept; }']);
    const dropIcmp = () => inNamespace(['nft', 'add', 'rule', 'inet', 'filter', 'input', 'meta', 'l4proto', 'icmp', 'drop']);
    if (kind === 'icmp')
      return { address: targetAddress, ports: [], drop: () => Promise.reject(new Error('no listeners for icmp')), dropIcmp, close };
    // The listeners run in a child inside the namespace: a process cannot move its own sockets there.
    child = spawn(
      system('ip'),
      ['netns', 'exec', namespace, process.execPath, '--import', 'tsx', fileURLToPath(new URL('netns-listeners.ts', import.meta.url))],
      {
        env: { ...process.env, COUNT: String(count), KIND: kind, ADDRESS: targetAddress },
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    );
    const lines = createInterface({ input: child.stdout! });
    const first = await new Promise<string>((resolve, reject) => {
      lines.once('line', resolve);
      child!.once('exit', (code) => reject(new Error(`namespace listeners exited with ${code} before listening`)));
    });
    lines.close();
    const { ports } = JSON.parse(first) as { ports: number[] };
    return {
      address: targetAddress,
      ports,
      drop: (port) => inNamespace(['nft', 'add', 'rule', 'inet', 'filter', 'input', 'tcp', 'dport', String(port), 'drop']),
      dropIcmp,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
