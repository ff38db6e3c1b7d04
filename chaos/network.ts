// The suite's network: one namespace joined to the root one by a veth pair on a
// test-made /30, where one executor runs so that it can be cut off; and one
// nftables table in the root namespace whose rules only ever match the
// test-made host address, to drop a VIM target's packets (no RST, no ICMP error:
// a connect times out). Every name starts with a fixed prefix, so a crashed
// run's leftovers are removed at the next start.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const namespace = 'vimmon-chaos';
const hostLink = 'vmchaos0';
const nsLink = 'vmchaos1';
const table = 'vimmon_chaos';
/** The root namespace's end: targets and the conductors' proxy listen here, reachable from both namespaces. */
export const hostAddress = '10.213.79.1';
/** The namespace's end: the executor that gets cut off listens here. */
export const namespaceAddress = '10.213.79.2';

// Absolute paths: under npm scripts node_modules/.bin comes first on PATH, and an npm package there is also called `nft`.
export function systemTool(tool: string): string {
  const found = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'].map((dir) => `${dir}/${tool}`).find((file) => existsSync(file));
  if (!found) throw new Error(`${tool} not found (Debian: apt-get install -y ${tool === 'ip' ? 'iproute2' : 'nftables'})`);
  return found;
}

async function sh(tool: string, args: string[]): Promise<void> {
  await run(systemTool(tool), args);
}

const inNamespace = (tool: string, args: string[]) => sh('ip', ['netns', 'exec', namespace, systemTool(tool), ...args]);

export interface ChaosNetwork {
  /** Drops every packet on the namespace's link, both ways (the executor there reaches neither conductors nor targets, nor is reached). */
  partition(): Promise<void>;
  heal(): Promise<void>;
  /** Drops packets to hostAddress:port, from either namespace. */
  dropTarget(port: number): Promise<void>;
  restoreTargets(): Promise<void>;
  /** The argv prefix that runs a command inside the namespace. */
  readonly exec: string[];
  close(): Promise<void>;
}

export async function removeNetworkLeftovers(): Promise<void> {
  await sh('ip', ['netns', 'del', namespace]).catch(() => {});
  await sh('ip', ['link', 'del', hostLink]).catch(() => {});
  await sh('nft', ['delete', 'table', 'inet', table]).catch(() => {});
}

export async function createChaosNetwork(): Promise<ChaosNetwork> {
  await removeNetworkLeftovers();
  try {
    await sh('ip', ['netns', 'add', namespace]);
    await inNamespace('ip', ['link', 'set', 'lo', 'up']);
    await sh('ip', ['link', 'add', hostLink, 'type', 'veth', 'peer', 'name', nsLink]);
    await sh('ip', ['link', 'set', nsLink, 'netns', namespace]);
    await sh('ip', ['addr', 'add', `${hostAddress}/30`, 'dev', hostLink]);
    await sh('ip', ['link', 'set', hostLink, 'up']);
    await inNamespace('ip', ['addr', 'add', `${namespaceAddress}/30`, 'dev', nsLink]);
    await inNamespace('ip', ['link', 'set', nsLink, 'up']);
    await inNamespace('nft', ['add', 'table', 'inet', table]);
    for (const hook of ['input', 'output'])
      await inNamespace('nft', ['add', 'chain', 'inet', table, hook, `{ type filter hook ${hook} priority 0; policy accept; }`]);
    await sh('nft', ['add', 'table', 'inet', table]);
    await sh('nft', ['add', 'chain', 'inet', table, 'input', '{ type filter hook input priority 0; policy accept; }']);
  } catch (error) {
    await removeNetworkLeftovers();
    throw error;
  }
  return {
    async partition() {
      await inNamespace('nft', ['add', 'rule', 'inet', table, 'input', 'iifname', nsLink, 'drop']);
      await inNamespace('nft', ['add', 'rule', 'inet', table, 'output', 'oifname', nsLink, 'drop']);
    },
    async heal() {
      for (const hook of ['input', 'output']) await inNamespace('nft', ['flush', 'chain', 'inet', table, hook]);
    },
    async dropTarget(port) {
      await sh('nft', ['add', 'rule', 'inet', table, 'input', 'ip', 'daddr', hostAddress, 'tcp', 'dport', String(port), 'drop']);
    },
    async restoreTargets() {
      await sh('nft', ['flush', 'chain', 'inet', table, 'input']);
    },
    exec: [systemTool('ip'), 'netns', 'exec', namespace],
    close: removeNetworkLeftovers,
  };
}
