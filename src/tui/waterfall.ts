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
import { recordSteps } from './steps.js';

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
  /** The name, indented two spaces per level of nesting, and what the step acts on (interfaces by name). */
  label: string;
  /** Bar start and length in columns of a bar area `barWidth` wide: 0 ≤ offset, offset + length ≤ barWidth. */
  offset: number;
  length: number;
  /** Where the row draws bars: its own and those of the calls folded into it, sorted, apart, in the bar area. */
  segments: { offset: number; length: number }[];
  /** Netlink calls folded into this row (shown with n, and in the details). */
  folded: PhaseRecord[];
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
  /**
   * Leave out rtnetlink lookups (RTM_GET*) that did not fail, and fold the calls that serve a step into its
   * row (see recordSteps); how many of each is returned.
   */
  hideLookups?: boolean;
}

/** The waterfall's rows in tree order, with bars scaled so the whole record spans `barWidth` columns. */
export function waterfallRows(
  record: HandshakeRecord,
  options: WaterfallOptions,
): { rows: WaterfallRow[]; hiddenLookups: number; foldedCalls: number } {
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

  const bar = (phase: PhaseRecord) => {
    const start = timeNs(phase.start) ?? scaleStart;
    const end = timeNs(phase.end);
    const offset = Math.min(width - 1, Math.max(0, Math.floor(column(start))));
    const endColumn = Math.round(column(end ?? scaleEnd));
    return { offset, length: Math.max(1, Math.min(width, endColumn) - offset), open: end === null };
  };
  const indexOf = new Map(placed.map((place, index) => [place.phase.id, index]));
  const { steps, hiddenLookups, foldedCalls } = recordSteps(
    record,
    placed,
    options.hideLookups === true,
  );
  const rows: WaterfallRow[] = [];
  for (const { phase, depth, folded, target } of steps) {
    const index = indexOf.get(phase.id) ?? 0;
    const failed = typeof phase.error === 'string' && phase.error !== '';
    const own = bar(phase);
    // A folded call's bar is drawn where it ran, on the row of the step it served.
    const cells = new Array<boolean>(width).fill(false);
    for (const { offset, length } of [own, ...folded.map(bar)])
      for (let at = offset; at < offset + length; at++) cells[at] = true;
    const segments: { offset: number; length: number }[] = [];
    cells.forEach((on, at) => {
      if (!on) return;
      const last = segments[segments.length - 1];
      if (last && last.offset + last.length === at) last.length++;
      else segments.push({ offset: at, length: 1 });
    });
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
      label: `${'  '.repeat(depth)}${phase.name}${target ? ` ${target}` : ''}`,
      offset: own.offset,
      length: own.length,
      segments,
      folded,
      open: own.open,
      ms: own.open ? 'open' : msText(stepMs(phase, folded)),
      failed,
      cause: failed && record.error?.phase === phase.name,
      message,
      lookup: isLookup(phase),
    });
  }
  return { rows, hiddenLookups, foldedCalls };
}

/** A step's time: its own, plus that of the sibling calls folded into it (calls inside it are in its own). */
function stepMs(phase: PhaseRecord, folded: PhaseRecord[]): number | null {
  if (phase.durationMs === null) return null;
  let ms = phase.durationMs;
  for (const call of folded) if (call.parentId !== phase.id) ms += call.durationMs ?? 0;
  return ms;
}

/**
 * The waterfall's columns on a pane `width` characters wide: name, bar, milliseconds. The names get what
 * the longest needs (`longest`), up to 45% of the pane: rows name the interfaces they act on.
 */
export function waterfallColumns(
  width: number,
  longest = 34,
): { label: number; bar: number; ms: number } {
  const ms = 10;
  const label = Math.max(12, Math.min(longest, Math.floor(width * 0.45)));
  return { label, bar: Math.max(1, width - label - ms - 2), ms };
}

/** A line of the pane; `phaseId` says which phase a row is (rows can be selected), null for other lines. */
export interface WaterfallLine {
  runs: Run[];
  phaseId: number | null;
  /** On the legend: what is hidden and folded, for the pane's label when the legend gives its line to rows. */
  note?: string;
  /** On a row: the calls folded into it, for the details. */
  folded?: PhaseRecord[];
}

export function legendLine(glyphs: Glyphs = unicodeGlyphs): Run[] {
  return phaseKinds.flatMap((kind) => [
    { text: glyphs.swatch, style: kindStyle[kind] },
    { text: ` ${kindLabel[kind]}  ` },
  ]);
}

/** What the folded view leaves out, and the key that shows it. */
export function hiddenNote(hiddenLookups: number, foldedCalls: number): string | null {
  const parts = [
    ...(hiddenLookups > 0 ? [`${hiddenLookups} lookups hidden`] : []),
    ...(foldedCalls > 0 ? [`+${foldedCalls} calls folded`] : []),
  ];
  return parts.length > 0 ? `${parts.join(', ')} (n)` : null;
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
  // Bars are placed on the width left by the names: the rows' labels are measured first, on any width.
  const named = waterfallRows(record, { barWidth: 1, hideLookups: options.hideLookups });
  const suffix = (folded: number) => (folded > 0 ? ` +${folded}` : '');
  const longest = Math.max(
    0,
    ...named.rows.map((row) => row.label.length + suffix(row.folded.length).length),
  );
  const columns = waterfallColumns(width, longest);
  const { rows, hiddenLookups, foldedCalls } = waterfallRows(record, {
    barWidth: columns.bar,
    hideLookups: options.hideLookups,
  });
  // The legend line stays on screen while the rows scroll: the place to say that rows are hidden.
  const note = hiddenNote(hiddenLookups, foldedCalls);
  const legend = legendLine(glyphs);
  if (note) legend.unshift({ text: `${note}  `, style: 'gray-fg' });
  const lines: WaterfallLine[] = [{ runs: legend, phaseId: null, note: note ?? undefined }];
  for (const row of rows) {
    const style = row.failed ? 'red-fg' : kindStyle[row.kind];
    // The count of folded calls stays when a long name is cut.
    const count = suffix(row.folded.length);
    const room = Math.max(1, columns.label - count.length);
    const label =
      row.label.length > room
        ? `${row.label.slice(0, room - 1)}${glyphs.ellipsis}${count}`
        : `${row.label}${count}`.padEnd(columns.label);
    const bars: Run[] = [];
    let at = 0;
    for (const segment of row.segments) {
      if (segment.offset > at) bars.push({ text: ' '.repeat(segment.offset - at) });
      bars.push({ text: (row.open ? glyphs.openBar : glyphs.bar).repeat(segment.length), style });
      at = segment.offset + segment.length;
    }
    lines.push({
      phaseId: row.phase.id,
      folded: row.folded,
      runs: [
        { text: label, style: row.failed ? 'red-fg' : undefined },
        { text: ' ' },
        ...bars,
        { text: ' '.repeat(columns.bar - at + 1) },
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
