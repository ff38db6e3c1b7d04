// Addresses no probe may reach (VIMMON_PROBE_DENY): by default the link-local
// range, where clouds serve instance metadata and credentials. The Tacker
// server refuses an auth_url naming such an address; the executor checks the
// address it actually connects to, after DNS, so a name cannot smuggle one in.
// Matching is node's net.BlockList; an IPv4-mapped IPv6 address
// (::ffff:169.254.169.254) matches the IPv4 rule.
import dns from 'node:dns';
import net from 'node:net';

export const defaultProbeDenyRanges: readonly string[] = ['169.254.0.0/16'];

export interface AddressDenyList {
  /** The ranges as configured, e.g. "169.254.0.0/16". */
  readonly ranges: readonly string[];
  /** The denied range holding `address` (an IP literal), or undefined; anything else is undefined. */
  match(address: string): string | undefined;
}

/** Thrown (and passed to socket callbacks) for an address in a denied range. */
export class DeniedAddressError extends Error {
  override name = 'DeniedAddressError';
  readonly code = 'EVIMMON_DENIED';
  constructor(
    readonly address: string,
    readonly range: string,
    host?: string,
  ) {
    super(
      `${host && host !== address ? `${host} resolves to ${address}, which` : address} is in a denied range (${range}, VIMMON_PROBE_DENY)`,
    );
  }
}

/** "10.0.0.0/8", "fd00::/8"; a bare address is a /32 or /128. Throws naming the bad entry. */
export function createAddressDenyList(ranges: readonly string[]): AddressDenyList {
  const rules = ranges.map((range) => {
    const [address = '', prefixText, ...rest] = range.split('/');
    const family = net.isIPv4(address) ? 'ipv4' : net.isIPv6(address) ? 'ipv6' : undefined;
    const max = family === 'ipv4' ? 32 : 128;
    const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
    if (!family || rest.length > 0 || !(prefix >= 0 && prefix <= max)) {
      throw new Error(`${JSON.stringify(range)} is not an address range such as 169.254.0.0/16 or fd00::/8`);
    }
    const list = new net.BlockList();
    list.addSubnet(address, prefix, family);
    return { range, list };
  });
  return {
    ranges: [...ranges],
    match(address) {
      const family = net.isIPv4(address) ? 'ipv4' : net.isIPv6(address) ? 'ipv6' : undefined;
      if (!family) return undefined;
      // BlockList compares across families: ::ffff:169.254.169.254 (in any spelling) is in 169.254.0.0/16.
      for (const { range, list } of rules) {
        if (list.check(address, family)) return range;
      }
      return undefined;
    },
  };
}

/**
 * VIMMON_PROBE_DENY: comma-separated ranges; unset or empty: the default;
 * "none": an empty list. Throws naming the variable.
 */
export function parseAddressDenyList(text: string | undefined, name = 'VIMMON_PROBE_DENY'): AddressDenyList {
  const t = text?.trim();
  if (!t) return createAddressDenyList(defaultProbeDenyRanges);
  if (t.toLowerCase() === 'none') return createAddressDenyList([]);
  try {
    return createAddressDenyList(
      t
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    );
  } catch (err) {
    throw new Error(`${name}: ${(err as Error).message} (or none for no range)`);
  }
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;

/**
 * A `lookup` for net.connect and http(s).request that resolves as dns.lookup
 * does and drops denied addresses, failing with DeniedAddressError when none
 * is left. (Node calls no lookup for an IP literal: check those with match().)
 */
export function createFilteringLookup(deny: AddressDenyList): net.LookupFunction {
  return ((hostname: string, given: dns.LookupOptions | number | undefined, callback: LookupCallback) => {
    const options: dns.LookupOptions = typeof given === 'object' ? given : { family: given ?? 0 };
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, options.all ? [] : '', undefined);
      let denied: DeniedAddressError | undefined;
      const allowed = addresses.filter(({ address }) => {
        const range = deny.match(address);
        if (range !== undefined) denied ??= new DeniedAddressError(address, range, hostname);
        return range === undefined;
      });
      if (allowed.length === 0) {
        const failure = denied ?? Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' });
        return callback(failure, options.all ? [] : '', undefined);
      }
      if (options.all) return callback(null, allowed);
      callback(null, allowed[0]!.address, allowed[0]!.family);
    });
  }) as net.LookupFunction;
}
