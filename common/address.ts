/** "127.0.0.1:0" + 41234 → "127.0.0.1:41234"; keeps IPv6 brackets. */
export function withPort(address: string, port: number): string {
  const i = address.lastIndexOf(':');
  return `${address.slice(0, i)}:${port}`;
}

/** Splits host:port; the host of "[::1]:80" is "::1". */
export function splitHostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(address.slice(i + 1)) };
}
