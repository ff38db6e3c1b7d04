// One grpc-js channel per role: the address list becomes a target that grpc-js
// balances itself (round_robin over every address, skipping those that are
// down), and the TLS options become channel credentials.
import { Channel, ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';
import { OptionError } from './option-error.js';

/** PEM contents (not file paths). */
export interface TlsOptions {
  /** CA certificate(s) that signed the servers' certificates; unset: the system's roots. */
  ca?: string | Buffer;
  /** Client certificate, for mutual TLS; goes with key. */
  cert?: string | Buffer;
  /** The client certificate's private key. */
  key?: string | Buffer;
  /** The name to check the server's certificate against, when it is not the address's host. */
  serverName?: string;
}

export interface ChannelSettings {
  tls?: TlsOptions | boolean;
  channelOptions?: Record<string, unknown>;
}

const ipv4Address = /^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/;
const ipv6Address = /^\[[0-9a-fA-F:.]+\]:\d{1,5}$/;
const schemeTarget = /^(dns|ipv4|ipv6|unix|unix-abstract|vsock):/;

/**
 * The grpc-js target for a role's addresses. One address is used as given
 * (host:port, or a grpc target such as dns:///name:port), still balanced over
 * every address a DNS name resolves to. Several addresses must be IP literals
 * (all IPv4 or all IPv6): grpc-js's own ipv4:/ipv6: resolvers take a list, and
 * its round_robin policy spreads calls over the connected ones.
 */
export function targetOf(field: string, addresses: string | readonly string[]): string {
  const list = (typeof addresses === 'string' ? addresses.split(',') : [...addresses]).map((a) => {
    if (typeof a !== 'string') throw new OptionError(field, 'each address must be a string "host:port"');
    return a.trim();
  });
  if (list.length === 0 || list.some((a) => a.length === 0)) throw new OptionError(field, 'an address is empty; give "host:port"');
  for (const a of list) {
    if (/\s/.test(a) || a.length > 1_024) throw new OptionError(field, `${JSON.stringify(a.slice(0, 80))} is not an address "host:port"`);
    if (!schemeTarget.test(a)) checkPort(field, a);
  }
  if (list.length === 1) return list[0]!;
  if (list.every((a) => ipv4Address.test(a))) return `ipv4:${list.join(',')}`;
  if (list.every((a) => ipv6Address.test(a))) return `ipv6:${list.join(',')}`;
  throw new OptionError(
    field,
    'a list of addresses must be all IPv4 or all IPv6 literals with ports (e.g. 10.0.0.1:50051,10.0.0.2:50051); ' +
      'for host names give one DNS name that resolves to every address (dns:///name:port)',
  );
}

function checkPort(field: string, address: string): void {
  const port = /:(\d+)$/.exec(address)?.[1];
  const n = port === undefined ? Number.NaN : Number(port);
  if (!(n >= 1 && n <= 65_535)) throw new OptionError(field, `${JSON.stringify(address.slice(0, 80))} needs a port 1-65535 ("host:port")`);
}

function pem(field: string, value: string | Buffer | undefined): Buffer | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' && !(value instanceof Uint8Array)) throw new OptionError(field, 'must be PEM text (a string or a Buffer)');
  const buffer = Buffer.from(value);
  // A path given where the contents belong is the usual mistake: say so rather than let the handshake fail.
  if (!buffer.includes('-----BEGIN '))
    throw new OptionError(field, 'is not PEM (no "-----BEGIN" line); pass the file\'s contents, not its path');
  return buffer;
}

export function credentialsOf(tls: TlsOptions | boolean | undefined): { credentials: ChannelCredentials; options: ChannelOptions } {
  if (tls === undefined || tls === false) return { credentials: ChannelCredentials.createInsecure(), options: {} };
  if (tls === true) return { credentials: ChannelCredentials.createSsl(), options: {} };
  if (typeof tls !== 'object' || tls === null) throw new OptionError('tls', 'must be true, false or { ca, cert, key, serverName }');
  const ca = pem('tls.ca', tls.ca);
  const cert = pem('tls.cert', tls.cert);
  const key = pem('tls.key', tls.key);
  if (cert && !key) throw new OptionError('tls.key', 'is required with tls.cert');
  if (key && !cert) throw new OptionError('tls.cert', 'is required with tls.key');
  const options: ChannelOptions = {};
  if (tls.serverName !== undefined) {
    if (typeof tls.serverName !== 'string' || !/^[A-Za-z0-9.:_-]{1,253}$/.test(tls.serverName)) {
      throw new OptionError('tls.serverName', 'must be a host name');
    }
    options['grpc.ssl_target_name_override'] = tls.serverName;
    options['grpc.default_authority'] = tls.serverName;
  }
  return { credentials: ChannelCredentials.createSsl(ca ?? null, key ?? null, cert ?? null), options };
}

/** The defaults every role's channel gets; channelOptions given by the caller win. */
const defaultChannelOptions: ChannelOptions = {
  'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
  // Long watches cross idle stretches: pings find a dead connection so the stream can resume.
  'grpc.keepalive_time_ms': 30_000,
  // grpc-js backs reconnects off up to 120 s by default; a role restarted in seconds is found again in seconds.
  'grpc.max_reconnect_backoff_ms': 5_000,
};

export function createRoleChannel(field: string, addresses: string | readonly string[], settings: ChannelSettings): Channel {
  const target = targetOf(field, addresses);
  const { credentials, options } = credentialsOf(settings.tls);
  // grpc-js's Channel, not nice-grpc's createChannel: that one rewrites an address without a port.
  return new Channel(target, credentials, { ...defaultChannelOptions, ...options, ...(settings.channelOptions as ChannelOptions) });
}
