// Parsers of option values for commander: a bad value is a usage error (exit 2)
// naming the option, which commander adds to the message.
import { InvalidArgumentError } from 'commander';

export function positiveInteger(max: number) {
  return (text: string): number => {
    if (!/^\d{1,9}$/.test(text) || Number(text) < 1 || Number(text) > max)
      throw new InvalidArgumentError(`expected a whole number from 1 to ${max}.`);
    return Number(text);
  };
}

export function alarmId(text: string): number {
  if (!/^\d{1,16}$/.test(text) || !Number.isSafeInteger(Number(text)))
    throw new InvalidArgumentError('expected an alarm id (a whole number).');
  return Number(text);
}

/** A repeatable option: every value, in order. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function eventStatus(text: string): string {
  const v = text.trim().toLowerCase();
  if (v !== 'down' && v !== 'up') throw new InvalidArgumentError('expected down or up.');
  return v;
}

export function isoTime(text: string): Date {
  const d = new Date(text);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(text) || Number.isNaN(d.getTime()))
    throw new InvalidArgumentError('expected an ISO 8601 time such as 2026-11-22T10:00:00Z.');
  return d;
}
