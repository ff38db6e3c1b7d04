import type { Duration } from '../gen/google/protobuf/duration.js';

export function durationToMs(d: Duration | undefined): number | undefined {
  if (!d) return undefined;
  return d.seconds * 1000 + Math.round(d.nanos / 1e6);
}

export function msToDuration(ms: number): Duration {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}
