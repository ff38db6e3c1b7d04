// Every list reply fits gRPC's default 4 MiB message, whatever the length of
// what it holds: pages are cut by encoded size as well as by count.

/** Encoded bytes a list reply may hold, with room to spare under 4 MiB. */
export const maxReplyBytes = 3 * 1024 * 1024;

/** How many of `items` (at least one) fit in maxReplyBytes as a repeated field. */
export function withinReplyBytes<T>(items: readonly T[], encodedLength: (item: T) => number, max = maxReplyBytes): number {
  let bytes = 0;
  for (let i = 0; i < items.length; i++) {
    const n = encodedLength(items[i]!);
    bytes += n + 1 + varintLength(n); // the field's tag and length prefix
    if (bytes > max && i > 0) return i;
  }
  return items.length;
}

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    len++;
  }
  return len;
}
