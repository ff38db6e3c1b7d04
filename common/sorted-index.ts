// Paging and resuming over lists kept sorted by a key: where to start after a given key.

/**
 * Index of the first item (from `from` on) whose key sorts above `after`, by binary search;
 * `items` must be sorted by `keyOf`, ascending. items.length when there is none.
 */
export function firstIndexAbove<T, K extends string | number>(items: readonly T[], after: K, keyOf: (item: T) => K, from = 0): number {
  let lo = from;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keyOf(items[mid]!) <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
