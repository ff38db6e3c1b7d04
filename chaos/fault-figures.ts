// The report's figures per fault kind: counts and p50/p99/max of each timing.
import type { FaultKind, FaultOutcome } from './faults.js';

function percentile(sorted: number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function summary(values: Array<number | undefined>) {
  const sorted = values.filter((v): v is number => v !== undefined).sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1) };
}

/** Per kind: count, faults not recovered from, errors, and each timing's p50/p99/max (undefined values left out). */
export function faultFigures(outcomes: FaultOutcome[]): Record<string, Record<string, unknown>> {
  const kinds = [...new Set(outcomes.map((o) => o.kind))] as FaultKind[];
  return Object.fromEntries(
    kinds.map((kind) => {
      const of = outcomes.filter((o) => o.kind === kind);
      const figures: Record<string, unknown> = {
        count: of.length,
        notRestored: of.filter((o) => o.restorationMs === undefined).length,
        errors: of.filter((o) => o.error).map((o) => o.error),
        restorationFromInjectionMs: summary(of.map((o) => o.restorationMs)),
        restorationFromHealMs: summary(of.map((o) => o.fromHealMs)),
        healTookMs: summary(of.map((o) => o.healTookMs)),
      };
      if (of.some((o) => o.roleRecoveryMs !== undefined || o.kind === 'rabbitmq-stop'))
        figures.consumerConnectedAfterHealMs = summary(of.map((o) => o.roleRecoveryMs));
      if (of.some((o) => o.vimsOnTarget !== undefined)) figures.vimsOnTarget = of.map((o) => o.vimsOnTarget);
      if (kind === 'target-packets-dropped') {
        figures.detectionMs = summary(of.map((o) => o.detectionMs));
        figures.recoveryAfterHealMs = summary(of.map((o) => o.recoveryMs));
      }
      return [kind, figures];
    }),
  );
}
