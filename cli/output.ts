// What the people commands print: aligned tables, relative times and colour
// for a person at a terminal; JSON (one object per line) or YAML for programs.
// The aligner is a few lines of our own: the packages that do it (cli-table3,
// columnify) are not installed, and a table of plain text needs no more.
import { styleText } from 'node:util';
import { stringify } from 'yaml';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';

export type OutputFormat = 'table' | 'json' | 'yaml';
export const outputFormats: readonly OutputFormat[] = ['table', 'json', 'yaml'];

type Colour = 'green' | 'red' | 'yellow' | 'dim' | 'bold';

/** A table cell: text, optionally coloured (when colour is on). */
export type Cell = string | { text: string; colour?: Colour };

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /** The process environment, handed in whole (common/env.ts's rule: nobody reads process.env piecemeal). */
  env: NodeJS.ProcessEnv;
  /** Standard output is a terminal. */
  tty: boolean;
  /** Standard input, for --password-file -. */
  stdin?: NodeJS.ReadableStream;
}

export interface Printer {
  readonly format: OutputFormat;
  /** Aligned columns under a header; with no rows, `empty` (to stderr, so stdout stays parseable). */
  table(header: string[], rows: Cell[][], empty?: string): void;
  /** Key/value lines of one object. */
  fields(rows: Array<[string, Cell]>): void;
  /** One line as it is (table format only: watches, summaries). */
  line(text: string): void;
  /** A note for the person, on stderr (never mixed into output for programs). */
  note(text: string): void;
  /** One object: JSON on one line, or a YAML document. */
  object(value: unknown): void;
  /** The objects of a list: JSON one per line, or one YAML sequence. */
  list(values: unknown[]): void;
  /** One object of a stream: JSON one per line, or YAML documents separated by ---. */
  streamed(value: unknown): void;
  paint(text: string, colour: Colour | undefined): string;
}

/** Colour only on a terminal, and never when NO_COLOR is set (no-color.org). */
export function colourWanted(io: CliIo): boolean {
  const noColour = io.env.NO_COLOR;
  return io.tty && (noColour === undefined || noColour === '');
}

export function createPrinter(io: CliIo, format: OutputFormat): Printer {
  const colour = colourWanted(io);
  let documents = 0;
  const paint = (text: string, c: Colour | undefined) => (colour && c ? styleText(c, text, { validateStream: false }) : text);
  const cellText = (c: Cell) => visible(typeof c === 'string' ? c : c.text);
  const cellColour = (c: Cell) => (typeof c === 'string' ? undefined : c.colour);
  return {
    format,
    paint,
    table(header, rows, empty) {
      if (rows.length === 0) {
        if (empty) io.err(`${empty}\n`);
        return;
      }
      const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => width(cellText(r[i] ?? '')))));
      const render = (cells: Cell[], head: boolean) =>
        cells
          .map((c, i) => {
            const text = cellText(c);
            const padded = i === cells.length - 1 ? text : text + ' '.repeat(widths[i]! - width(text));
            return paint(padded, head ? 'bold' : cellColour(c));
          })
          .join('  ')
          .trimEnd();
      io.out(`${render(header, true)}\n`);
      for (const r of rows) io.out(`${render(r, false)}\n`);
    },
    fields(rows) {
      const w = Math.max(...rows.map(([k]) => k.length));
      for (const [k, v] of rows) io.out(`${paint(`${k}:`.padEnd(w + 1), 'dim')}  ${paint(cellText(v), cellColour(v))}\n`);
    },
    line(text) {
      io.out(`${text}\n`);
    },
    note(text) {
      io.err(`${text}\n`);
    },
    object(value) {
      if (format === 'yaml') io.out(stringify(value));
      else io.out(`${JSON.stringify(value)}\n`);
    },
    list(values) {
      if (format === 'yaml') io.out(stringify(values));
      else for (const v of values) io.out(`${JSON.stringify(v)}\n`);
    },
    streamed(value) {
      if (format === 'yaml') io.out(`${documents++ > 0 ? '---\n' : ''}${stringify(value)}`);
      else io.out(`${JSON.stringify(value)}\n`);
    },
  };
}

/**
 * Text a peer sent, made safe for a terminal: control characters (an escape
 * sequence in a host name from a monitor) are shown escaped, not obeyed.
 */
export function visible(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

// East Asian wide characters and emoji take two columns of a terminal.
const wide =
  /[\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\ua000-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6\u{1f300}-\u{1f64f}\u{1f900}-\u{1f9ff}\u{20000}-\u{3fffd}]/u;

/** Columns a string takes on a terminal. */
export function width(text: string): number {
  let n = 0;
  for (const ch of text) n += wide.test(ch) ? 2 : 1;
  return n;
}

/** "just now", "42s ago", "3m ago", "5h ago", "12d ago"; "in 3m" for a time ahead. */
export function relativeTime(when: Date | undefined, now: number = Date.now()): string {
  if (!when) return '-';
  const ms = now - when.getTime();
  const abs = Math.abs(ms);
  if (abs < 1_000) return 'just now';
  const units: Array<[number, string]> = [
    [86_400_000, 'd'],
    [3_600_000, 'h'],
    [60_000, 'm'],
    [1_000, 's'],
  ];
  const [size, unit] = units.find(([u]) => abs >= u)!;
  const n = Math.floor(abs / size);
  return ms >= 0 ? `${n}${unit} ago` : `in ${n}${unit}`;
}

/** "2026-11-22T10:00:00Z (3m ago)". */
export function timeAndAge(when: Date | undefined, now: number = Date.now()): string {
  if (!when) return '-';
  return `${when.toISOString().replace(/\.000Z$/, 'Z')} (${relativeTime(when, now)})`;
}

/** VIM_STATUS_REACHABLE → REACHABLE, coloured by what it means. */
export function statusCell(s: VimStatus): Cell {
  const text = (VimStatus[s] ?? String(s)).replace(/^VIM_STATUS_/, '');
  const colour: Colour | undefined =
    s === VimStatus.VIM_STATUS_REACHABLE
      ? 'green'
      : s === VimStatus.VIM_STATUS_UNREACHABLE
        ? 'red'
        : s === VimStatus.VIM_STATUS_PENDING
          ? 'yellow'
          : undefined;
  return { text, colour };
}

/** An enum value without its prefix: ALARM_TYPE_HOST_DOWN → HOST_DOWN. */
export function enumText(names: Record<number, string>, value: number, prefix: string): string {
  return (names[value] ?? String(value)).replace(prefix, '');
}
