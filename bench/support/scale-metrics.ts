// Reading the roles' Prometheus endpoints for bench/scale.ts: the text format
// parsed into samples, counters summed across processes, and histograms merged
// across processes and differenced over a window, with the quantile estimated
// as Prometheus's histogram_quantile does (linear within the bucket).

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Bounded: a role's endpoint is a few hundred series; anything far larger is a mistake. */
const maxScrapeBytes = 8 * 1024 * 1024;

const sampleLine = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const labelPair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = sampleLine.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const pair of (m[2] ?? '').matchAll(labelPair)) labels[pair[1]!] = pair[2]!.replace(/\\(.)/g, '$1');
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

export async function scrape(metricsAddress: string, timeoutMs = 5_000): Promise<Sample[]> {
  const res = await fetch(`http://${metricsAddress}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`GET http://${metricsAddress}/metrics: ${res.status}`);
  const text = await res.text();
  if (text.length > maxScrapeBytes) throw new Error(`${metricsAddress}/metrics answered ${text.length} bytes`);
  return parsePrometheusText(text);
}

const matches = (s: Sample, name: string, labels: Record<string, string>) =>
  s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v);

/** The sum of every series of `name` whose labels include `labels`, over every scrape given. */
export function sumOf(scrapes: Sample[][], name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const samples of scrapes) for (const s of samples) if (matches(s, name, labels)) total += s.value;
  return total;
}

/** Cumulative bucket counts by upper bound (+Inf included), summed over every scrape given. */
export type Buckets = Map<number, number>;

export function mergedBuckets(scrapes: Sample[][], histogram: string, labels: Record<string, string> = {}): Buckets {
  const buckets: Buckets = new Map();
  for (const samples of scrapes)
    for (const s of samples) {
      if (!matches(s, `${histogram}_bucket`, labels)) continue;
      const le = s.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(s.labels.le);
      buckets.set(le, (buckets.get(le) ?? 0) + s.value);
    }
  return buckets;
}

/** What was observed between two readings of the same counters. */
export function bucketsBetween(before: Buckets, after: Buckets): Buckets {
  const out: Buckets = new Map();
  for (const [le, count] of after) out.set(le, count - (before.get(le) ?? 0));
  return out;
}

export interface Quantile {
  /** Linear within the bucket, as histogram_quantile; the highest finite bound when it falls in +Inf. */
  estimate: number;
  /** The bucket's upper bound: the observation was at most this. */
  atMost: number;
}

export function quantileOf(buckets: Buckets, q: number): Quantile | undefined {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Number.POSITIVE_INFINITY) ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const le of bounds) {
    const count = buckets.get(le)!;
    if (count >= rank) {
      if (le === Number.POSITIVE_INFINITY) return { estimate: lower, atMost: le };
      const estimate = count === below ? le : lower + ((le - lower) * (rank - below)) / (count - below);
      return { estimate, atMost: le };
    }
    lower = le;
    below = count;
  }
  return undefined;
}

export function countOf(buckets: Buckets): number {
  return buckets.get(Number.POSITIVE_INFINITY) ?? 0;
}
