// The timeline's list without a terminal: records newest first under a cap, filters, the selection, row text.
import type { HandshakeRecord } from '../correlate/record.js';
import { type Glyphs, msText, type Run, tagged, unicodeGlyphs } from './columns.js';
import { slowestPhase } from './phases.js';

export interface Filter {
  /** Matches namespace/name, a sandbox id prefix, the outcome or the error message; '' matches all. */
  text: string;
  failedOnly: boolean;
  showTeardowns: boolean;
}

export const noFilter: Filter = { text: '', failedOnly: false, showTeardowns: true };

/** A record as listed: `seq` says which arrived when, so the selection survives new arrivals. */
export interface Listed {
  seq: number;
  record: HandshakeRecord;
  /** Lower-cased text the filter searches, made once per record. */
  searchText: string;
  sandboxId: string;
}

export function podName(record: HandshakeRecord): string {
  const { namespace, name } = record.pod ?? { namespace: null, name: null };
  if (!namespace && !name)
    return record.sandboxId ? `sandbox ${record.sandboxId.slice(0, 12)}` : '(unknown pod)';
  return `${namespace || '?'}/${name || '?'}`;
}

function listed(seq: number, record: HandshakeRecord): Listed {
  return {
    seq,
    record,
    searchText: [
      podName(record),
      record.outcome,
      record.error?.message ?? '',
      record.error?.phase ?? '',
    ]
      .join('\n')
      .toLowerCase(),
    sandboxId: (record.sandboxId ?? '').toLowerCase(),
  };
}

export function matchesFilter(entry: Listed, filter: Filter): boolean {
  const { record } = entry;
  if (filter.failedOnly && record.outcome !== 'failed') return false;
  if (!filter.showTeardowns && record.kind === 'teardown') return false;
  const text = filter.text.trim().toLowerCase();
  if (text === '') return true;
  return entry.searchText.includes(text) || entry.sandboxId.startsWith(text);
}

/** What the list's label says is hiding records, '' when nothing is. */
export function filterLabel(filter: Filter): string {
  const parts: string[] = [];
  if (filter.text.trim() !== '') parts.push(`/${filter.text.trim()}`);
  if (filter.failedOnly) parts.push('failed only');
  if (!filter.showTeardowns) parts.push('no teardowns');
  return parts.join(', ');
}

/**
 * The records seen, newest first by arrival (the order an SRE watching the node saw them), at most
 * `capacity`: a node that churns pods all day must not grow the daemon without bound.
 */
export class RecordStore {
  /** Oldest first, so that arrivals are a push and the cap drops from the front. */
  private entries: Listed[] = [];
  private nextSeq = 0;
  /** Bumped on every change, so that views can tell their cached rows are stale. */
  version = 0;

  constructor(readonly capacity = 2000) {}

  add(record: HandshakeRecord): Listed {
    const entry = listed(this.nextSeq++, record);
    this.entries.push(entry);
    if (this.entries.length > this.capacity)
      this.entries.splice(0, this.entries.length - this.capacity);
    this.version++;
    return entry;
  }

  get size(): number {
    return this.entries.length;
  }

  newestFirst(filter: Filter = noFilter): Listed[] {
    const out: Listed[] = [];
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const entry = this.entries[i];
      if (entry && matchesFilter(entry, filter)) out.push(entry);
    }
    return out;
  }
}

/**
 * The list pane's state: which record is selected and which slice is on screen. At the top the selection
 * follows new arrivals (the newest pod is what a watcher wants); moved down, it stays on its record.
 */
export class Timeline {
  private filterValue: Filter = noFilter;
  private cache: { version: number; filter: Filter; rows: Listed[] } | null = null;
  private selectedSeq: number | null = null;
  private selectedIndex = 0;
  private following = true;
  private top = 0;

  constructor(readonly store = new RecordStore()) {}

  get filter(): Filter {
    return this.filterValue;
  }

  set filter(filter: Filter) {
    this.filterValue = filter;
  }

  add(record: HandshakeRecord): void {
    this.store.add(record);
  }

  rows(): Listed[] {
    const cache = this.cache;
    if (cache && cache.version === this.store.version && cache.filter === this.filterValue)
      return cache.rows;
    const rows = this.store.newestFirst(this.filterValue);
    this.cache = { version: this.store.version, filter: this.filterValue, rows };
    return rows;
  }

  /** Where the selection is now: on its record if still listed, else at the same place in the list. */
  private resolve(): number {
    const rows = this.rows();
    if (rows.length === 0) return 0;
    let index = this.following ? 0 : -1;
    if (index < 0 && this.selectedSeq !== null) {
      const seq = this.selectedSeq;
      // Rows are in descending seq order: a binary search finds the record among thousands.
      let low = 0;
      let high = rows.length - 1;
      while (low <= high) {
        const mid = (low + high) >> 1;
        const at = rows[mid]?.seq ?? 0;
        if (at === seq) {
          index = mid;
          break;
        }
        if (at > seq) low = mid + 1;
        else high = mid - 1;
      }
    }
    if (index < 0) index = Math.min(this.selectedIndex, rows.length - 1);
    this.selectedIndex = index;
    this.selectedSeq = rows[index]?.seq ?? null;
    return index;
  }

  selected(): Listed | null {
    return this.rows()[this.resolve()] ?? null;
  }

  /** Stops following new arrivals (the user is reading this record's waterfall); moving to the top resumes. */
  hold(): void {
    this.resolve();
    this.following = false;
  }

  /** Moves the selection by `delta` rows (clamped); Infinity and -Infinity go to the ends. */
  move(delta: number): void {
    const rows = this.rows();
    if (rows.length === 0) return;
    const from = this.resolve();
    const to = Math.max(0, Math.min(rows.length - 1, from + delta));
    this.selectedIndex = to;
    this.selectedSeq = rows[to]?.seq ?? null;
    this.following = to === 0;
  }

  /** The rows on a pane `height` rows high, scrolled so that the selection is on screen. */
  window(height: number): { rows: Listed[]; selectedIndex: number; top: number } {
    const rows = this.rows();
    const index = this.resolve();
    const visible = Math.max(1, height);
    if (index < this.top) this.top = index;
    if (index >= this.top + visible) this.top = index - visible + 1;
    this.top = Math.max(0, Math.min(this.top, Math.max(0, rows.length - visible)));
    return {
      rows: rows.slice(this.top, this.top + visible),
      selectedIndex: index - this.top,
      top: this.top,
    };
  }
}

/** The list's columns on a pane `width` characters wide. */
export function listColumns(width: number): {
  marker: number;
  pod: number;
  outcome: number;
  total: number;
  slowest: number;
} {
  const marker = 2;
  const outcome = 11;
  const total = 11;
  const rest = Math.max(0, width - marker - outcome - total);
  const pod = Math.max(Math.min(12, rest), Math.floor(rest * 0.55));
  return { marker, pod, outcome, total, slowest: Math.max(0, rest - pod - 1) };
}

export const outcomeStyle: Record<HandshakeRecord['outcome'], string> = {
  ok: 'green-fg',
  failed: 'red-fg',
  incomplete: 'yellow-fg',
};

/** The column titles over the rows. */
export function listHeading(width: number, glyphs: Glyphs = unicodeGlyphs): string {
  const columns = listColumns(width);
  return tagged(
    [
      { text: ' '.repeat(columns.marker) },
      { text: 'pod'.padEnd(columns.pod) },
      { text: ' outcome'.padEnd(columns.outcome) },
      { text: 'total'.padStart(columns.total - 1) },
      { text: `  slowest phase (${glyphs.teardown} = teardown)` },
    ],
    width,
    glyphs,
  );
}

/**
 * One record as a list row: teardown marker, namespace/name, outcome in its colour, total, and the slowest
 * phase (see slowestPhase) with its duration.
 */
export function listRow(
  record: HandshakeRecord,
  width: number,
  glyphs: Glyphs = unicodeGlyphs,
): Run[] {
  const columns = listColumns(width);
  const slowest = slowestPhase(record);
  const pod = podName(record);
  const podText =
    pod.length > columns.pod ? `${pod.slice(0, columns.pod - 1)}${glyphs.ellipsis}` : pod;
  return [
    record.kind === 'teardown'
      ? { text: `${glyphs.teardown} `.padEnd(columns.marker), style: 'magenta-fg' }
      : { text: ' '.repeat(columns.marker) },
    { text: podText.padEnd(columns.pod) },
    { text: ` ${record.outcome}`.padEnd(columns.outcome), style: outcomeStyle[record.outcome] },
    { text: msText(record.durationMs).padStart(columns.total - 1) },
    { text: slowest ? `  ${slowest.name} ${msText(slowest.durationMs)}` : '  -' },
  ];
}
