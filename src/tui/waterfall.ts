// One record as a waterfall: a row per phase, indented as nested, a bar on the record's own time scale.
import {
  type HandshakeRecord,
  type PhaseKind,
  type PhaseRecord,
  phaseKinds,
} from '../correlate/record.js';
import { earliest, latest } from '../time.js';
import { type Glyphs, msText, type Run, unicodeGlyphs, wrap } from './columns.js';
import { isLookup, kindLabel, phaseTree, timeNs } from './phases.js';

/** Each kind's colour: bars and legend swatches, so that who acted reads at a glance. */
export const kindStyle: Record<PhaseKind, string> = {
  cri: 'blue-fg',
  netns: 'cyan-fg',
  cni: 'magenta-fg',
  ipam: 'yellow-fg',
  rtnetlink: 'green-fg',
  sandbox: 'white-fg',
};

export interface WaterfallRow {
  phase: PhaseRecord;
  depth: number;
  kind: PhaseKind;
  /** The name, indented two spaces per level of nesting. */
  label: string;
  /** Bar start and length in columns of a bar area `barWidth` wide: 0 ≤ offset, offset + length ≤ barWidth. */
  offset: number;
  length: number;
  /** The phase never ended (events lost, or the record was cut short): its bar runs to the record's end. */
  open: boolean;
  ms: string;
  failed: boolean;
  /** The phase the record names as where it failed. */
  cause: boolean;
  /** The error to print under the row: only on the deepest phase that carries that message. */
  message: string | null;
  lookup: boolean;
}

export interface WaterfallOptions {
  barWidth: number;
  /** Leave out rtnetlink lookups (RTM_GET*) that did not fail; their count is returned. */
  hideLookups?: boolean;
}

/** The waterfall's rows in tree order, with bars scaled so the whole record spans `barWidth` columns. */
export function waterfallRows(
  record: HandshakeRecord,
  options: WaterfallOptions,
): { rows: WaterfallRow[]; hiddenLookups: number } {
  const width = Math.max(1, Math.floor(options.barWidth));
  const placed = phaseTree(record);
  // The scale covers the record and every phase in it, so a phase stamped outside the record still fits.
  const starts = [timeNs(record.start), ...placed.map((p) => timeNs(p.phase.start))].filter(
    (ns): ns is bigint => ns !== null,
  );
  const ends = [timeNs(record.end), ...placed.map((p) => timeNs(p.phase.end))].filter(
    (ns): ns is bigint => ns !== null,
  );
  const scaleStart = starts.length > 0 ? earliest(starts) : 0n;
  const scaleEnd = latest([scaleStart, ...ends, ...starts]);
  const total = Number(scaleEnd - scaleStart) || 1;
  const column = (ns: bigint) => (Number(ns - scaleStart) / total) * width;

  const rows: WaterfallRow[] = [];
  let hiddenLookups = 0;
  placed.forEach(({ phase, depth }, index) => {
    const lookup = isLookup(phase);
    const failed = typeof phase.error === 'string' && phase.error !== '';
    if (options.hideLookups && lookup && !failed) {
      hiddenLookups++;
      return;
    }
    const start = timeNs(phase.start) ?? scaleStart;
    const end = timeNs(phase.end);
    const offset = Math.min(width - 1, Math.max(0, Math.floor(column(start))));
    const endColumn = Math.round(column(end ?? scaleEnd));
    const length = Math.max(1, Math.min(width, endColumn) - offset);
    let message: string | null = null;
    if (failed) {
      message = phase.error ?? null;
      // A child that says the same thing says it closer to where it happened.
      for (let at = index + 1; at < placed.length; at++) {
        const inner = placed[at];
        if (!inner || inner.depth <= depth) break;
        if (inner.phase.error === phase.error) {
          message = null;
          break;
        }
      }
    }
    rows.push({
      phase,
      depth,
      kind: phase.kind,
      label: `${'  '.repeat(depth)}${phase.name}`,
      offset,
      length,
      open: end === null,
      ms: end === null ? 'open' : msText(phase.durationMs),
      failed,
      cause: failed && record.error?.phase === phase.name,
      message,
      lookup,
    });
  });
  return { rows, hiddenLookups };
}

/** The waterfall's columns on a pane `width` characters wide: name, bar, milliseconds. */
export function waterfallColumns(width: number): { label: number; bar: number; ms: number } {
  const ms = 10;
  const label = Math.max(12, Math.min(34, Math.floor(width * 0.34)));
  return { label, bar: Math.max(1, width - label - ms - 2), ms };
}

/** A line of the pane; `phaseId` says which phase a row is (rows can be selected), null for other lines. */
export interface WaterfallLine {
  runs: Run[];
  phaseId: number | null;
}

export function legendLine(glyphs: Glyphs = unicodeGlyphs): Run[] {
  return phaseKinds.flatMap((kind) => [
    { text: glyphs.swatch, style: kindStyle[kind] },
    { text: ` ${kindLabel[kind]}  ` },
  ]);
}

/**
 * The pane's lines: the legend (and how many lookups are hidden), one row per phase (failures in red with
 * their message under them), the failure, and where the record differs from its runtime's normal order.
 */
export function waterfallLines(
  record: HandshakeRecord,
  width: number,
  options: { hideLookups?: boolean; glyphs?: Glyphs } = {},
): WaterfallLine[] {
  const glyphs = options.glyphs ?? unicodeGlyphs;
  const columns = waterfallColumns(width);
  const { rows, hiddenLookups } = waterfallRows(record, {
    barWidth: columns.bar,
    hideLookups: options.hideLookups,
  });
  // The legend line stays on screen while the rows scroll: the place to say that rows are hidden.
  const legend = legendLine(glyphs);
  if (hiddenLookups > 0)
    legend.push({ text: `${hiddenLookups} lookups hidden (n)`, style: 'gray-fg' });
  const lines: WaterfallLine[] = [{ runs: legend, phaseId: null }];
  for (const row of rows) {
    const style = row.failed ? 'red-fg' : kindStyle[row.kind];
    const label =
      row.label.length > columns.label
        ? `${row.label.slice(0, columns.label - 1)}${glyphs.ellipsis}`
        : row.label.padEnd(columns.label);
    lines.push({
      phaseId: row.phase.id,
      runs: [
        { text: label, style: row.failed ? 'red-fg' : undefined },
        { text: ` ${' '.repeat(row.offset)}` },
        { text: (row.open ? glyphs.openBar : glyphs.bar).repeat(row.length), style },
        { text: ' '.repeat(columns.bar - row.offset - row.length + 1) },
        {
          text: `${row.ms}${row.cause ? ` ${glyphs.failed}` : ''}`.padStart(columns.ms),
          style: row.failed ? 'red-fg' : undefined,
        },
      ],
    });
    if (row.message) {
      const indent = '  '.repeat(Math.min(row.depth + 1, 8));
      for (const text of wrap(`${indent}${glyphs.failed} ${row.message}`, width, `${indent}  `))
        lines.push({ phaseId: null, runs: [{ text, style: 'red-fg' }] });
    }
  }
  if (rows.length === 0)
    lines.push({ phaseId: null, runs: [{ text: 'no phases in this record', style: 'gray-fg' }] });
  if (record.error)
    for (const text of wrap(
      `failed in ${record.error.phase}: ${record.error.message}`,
      width,
      '  ',
    ))
      lines.push({ phaseId: null, runs: [{ text, style: 'red-fg' }] });
  for (const deviation of record.deviations ?? [])
    for (const text of wrap(`unusual: ${deviation}`, width, '  '))
      lines.push({ phaseId: null, runs: [{ text, style: 'gray-fg' }] });
  return lines;
}
