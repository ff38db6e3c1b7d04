// How many streams each caller holds at once: acquire before a stream starts,
// release (once, idempotently) when it ends. The gRPC server keys it by the
// caller's identity, so one caller cannot hold every stream of a server.

export interface StreamLimiterOptions {
  /** Streams one key may hold at once (at least 1). */
  maxPerKey: number;
}

export interface StreamLimiter {
  /** A release function, or undefined when the key already holds maxPerKey streams. */
  acquire(key: string): (() => void) | undefined;
  /** Streams the key holds now. */
  count(key: string): number;
}

export function createStreamLimiter(options: StreamLimiterOptions): StreamLimiter {
  const { maxPerKey } = options;
  if (!Number.isInteger(maxPerKey) || maxPerKey < 1)
    throw new RangeError(`maxPerKey must be a whole number of at least 1, got ${maxPerKey}`);
  // Only keys holding a stream are kept: the map cannot grow with callers that left.
  const held = new Map<string, number>();
  return {
    acquire(key) {
      const n = held.get(key) ?? 0;
      if (n >= maxPerKey) return undefined;
      held.set(key, n + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (held.get(key) ?? 1) - 1;
        if (left > 0) held.set(key, left);
        else held.delete(key);
      };
    },
    count: (key) => held.get(key) ?? 0,
  };
}
