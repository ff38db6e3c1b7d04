import { createChannel, type Channel } from 'nice-grpc';
import { channelCredentials, type Tls } from './tls.js';

/**
 * A channel to one logical target. A comma-separated list of host:port
 * ("127.0.0.1:50052,127.0.0.1:50062") becomes a grpc-js `ipv4:`/`ipv6:` target
 * with round_robin, so no proxy is needed; any other target (a proxy, a DNS
 * name) is used as given, still with round_robin over what it resolves to.
 */
export function createRoundRobinChannel(target: string, tls?: Tls): Channel {
  return createChannel(toGrpcTarget(target), channelCredentials(tls), {
    'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
    'grpc.keepalive_time_ms': 30_000,
    'grpc.enable_retries': 1,
    // grpc-js backs reconnects off up to 120 s by default, longer than a VIM's stale limit.
    'grpc.max_reconnect_backoff_ms': 5_000,
  });
}

export function toGrpcTarget(target: string): string {
  const parts = target
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
  if (parts.length <= 1) return parts[0] ?? target;
  if (parts.every((p) => /^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(p))) return `ipv4:${parts.join(',')}`;
  if (parts.every((p) => /^\[[0-9a-fA-F:.]+\]:\d+$/.test(p))) return `ipv6:${parts.join(',')}`;
  throw new Error(`target ${JSON.stringify(target)}: a list must be all IPv4 or all IPv6 host:port addresses`);
}
