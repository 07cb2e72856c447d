// Reads the trace_pipe of podwire's CRI uprobe events (src/probes/uprobe-events.ts): each entry becomes the same cri_*
// probe line a bpftrace program would print, so recordings and the pipeline do not care which ran it.
import type { CriMethod } from '../binaries/runtime.js';
import { probeLine } from './probe-lines.js';

export interface EventDefinition {
  event: string;
  method: CriMethod;
  side: 'in' | 'out';
  line: string;
}

/** What traceArgs(text, true) gives for a quoted value whose closing quote never came. */
const unclosed = '\u0000unclosed';

/**
 * key=value pairs of a trace line; a quoted value runs to the quote that ends it before the next key. A string
 * whose closing quote never came (the line ended inside it) keeps all its characters, or is `unclosed` when asked.
 */
function traceArgs(text: string, markUnclosed = false): Record<string, string> {
  const args: Record<string, string> = {};
  const pattern = /(\w+)=("(?:[^"]|"(?! \w+=|$))*"|\S*)/g;
  for (const match of text.matchAll(pattern)) {
    const [, key, raw] = match;
    if (key === undefined || raw === undefined) continue;
    const closed = raw.length > 1 && raw.endsWith('"');
    if (raw.startsWith('"') && !closed && markUnclosed) args[key] = unclosed;
    else args[key] = raw.startsWith('"') ? raw.slice(1, closed ? -1 : undefined) : raw;
  }
  return args;
}

const stripHex = (value: string | undefined) => (value ?? '').replace(/^0x/, '');

/** A fetched value as text: a string as it is, an x8 array (`{0x61,0x62}`) as its bytes, a failed read as ''. */
function fetchedText(raw: string): string {
  if (raw === '(fault)') return '';
  if (!raw.startsWith('{')) return raw;
  let text = '';
  for (const byte of raw.slice(1, raw.endsWith('}') ? -1 : undefined).split(',')) {
    const code = Number.parseInt(byte, 16);
    if (!Number.isFinite(code)) break;
    text += String.fromCharCode(code);
  }
  return text;
}

function cut(args: Record<string, string>, name: string): string {
  const value = fetchedText(args[name] ?? '');
  const length = Number(args[`${name}_len`]);
  if (Number.isFinite(length) && length >= 0) return value.slice(0, length);
  // No length (an older line, or one cut short): what follows the string in memory starts at a byte that is
  // not text; ids, names and uids never hold one.
  let end = 0;
  while (end < value.length) {
    const code = value.charCodeAt(end);
    if (code < 0x20 || code === 0x7f || code === 0xfffd) break;
    end++;
  }
  return value.slice(0, end);
}

/**
 * The header every trace_pipe entry begins with, "comm-tid [cpu] flags seconds.fraction:" (a "(tgid)" column when
 * the instance records it): captures tid, seconds and fraction.
 */
const entryHeader = String.raw`^\s*.*?-(\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[\d+\]\s+\S+\s+(\d+)\.(\d+):`;

/** What podwire writes to its instance's trace_marker to learn how far trace_pipe has been read (see tick.bt). */
export const tickMarker = 'podwire_tick';
const tickMarkerLine = new RegExp(`${entryHeader}\\s+tracing_mark_write: ${tickMarker}$`);

/**
 * A uprobe event's trace line: tid, seconds, fraction, event, arguments. dotAll: the bytes fetched past a Go string
 * can hold a carriage return, which '.' would not match, and a joined entry (EntryJoiner) holds newlines.
 */
const uprobeEntryLine = new RegExp(`${entryHeader}\\s+(\\w+):\\s+\\(0x[0-9a-f]+\\)(.*)$`, 's');

/** A trace line's "seconds.fraction" timestamp in ns. */
const traceNs = (seconds = '0', fraction = '0') =>
  BigInt(seconds) * 1_000_000_000n + BigInt(fraction.padEnd(9, '0').slice(0, 9));

/**
 * One line of trace_pipe (trace_clock mono, so timestamps match bpftrace's nsecs) as podwire probe lines.
 * `tgidOf` turns the thread id into its process id (tracefs does not always know it).
 */
export function traceLineToProbeLines(
  raw: string,
  definitions: Map<string, EventDefinition>,
  tgidOf: (tid: number) => number,
): string[] | string {
  const tick = tickMarkerLine.exec(raw);
  if (tick) {
    const [, tidText, seconds, fraction] = tick;
    const tid = Number(tidText);
    return [probeLine('tick', { ns: traceNs(seconds, fraction), pid: tgidOf(tid), tid }, {})];
  }
  const match = uprobeEntryLine.exec(raw);
  if (!match) return `not a uprobe event line: "${raw.slice(0, 80)}"`;
  const [, tidText, seconds, fraction, event, rest] = match;
  const definition = definitions.get(event ?? '');
  if (!definition) return `unknown uprobe event ${event}`;
  const tid = Number(tidText);
  const pid = tgidOf(tid);
  const ns = traceNs(seconds, fraction);
  const args = traceArgs(rest ?? '');
  const goroutine = stripHex(args.g);
  const head = { ns, pid, tid };
  const method = definition.method;
  if (definition.side === 'out') {
    const failed = stripHex(args.err).replace(/^0+/, '') !== '' ? 1 : 0;
    const sandboxId = failed ? '' : cut(args, 'id');
    return [probeLine('cri_return', head, { method, goroutine, failed, sandboxId })];
  }
  const names = Object.keys(args).filter((key) => key !== 'g' && !key.endsWith('_len'));
  return [
    probeLine('cri_enter', head, { method, goroutine, args: names.length }),
    ...names.map((name) => probeLine('cri_arg', head, { goroutine, name, value: cut(args, name) })),
  ];
}

/** The start of a trace_pipe entry (its header), or a lost-events line. */
const entryStart = new RegExp(`${entryHeader}|\\[LOST \\d+ EVENTS\\]`);

/** The names of the arguments an event fetches, in its definition's order ("g", "name_len", "name", ...). */
const fetchedNames = new WeakMap<EventDefinition, string[]>();
function argumentNames(definition: EventDefinition): string[] {
  let names = fetchedNames.get(definition);
  if (!names) {
    const args = definition.line.split(' ').slice(2).join(' ');
    names = [...args.matchAll(/(?:^| )(\w+)=/g)].map((m) => m[1] as string);
    fetchedNames.set(definition, names);
  }
  return names;
}

/**
 * Whether a trace line is an entry of ours that is not whole: some of its event's arguments are missing, or its
 * last one ends inside its quotes. tracefs reads a `:string` fetch on to a NUL, and the bytes past a Go string can
 * hold a newline, which ends the line inside the entry; the rest comes as the next line(s).
 */
export function entryCut(raw: string, definitions: Map<string, EventDefinition>): boolean {
  const match = uprobeEntryLine.exec(raw);
  if (!match) return false;
  const definition = definitions.get(match[4] ?? '');
  if (!definition) return false;
  const names = argumentNames(definition);
  const args = traceArgs(match[5] ?? '', true);
  const last = names.at(-1);
  if (last === undefined) return false;
  return names.some((name) => !(name in args)) || args[last] === unclosed;
}

/** How many lines one entry may be made of: a held entry gives way after this many. */
const maxEntryLines = 16;

/**
 * Gives whole trace entries: an entry that is not whole (entryCut) is held, and each line that follows without
 * beginning an entry is added to it with its newline, until it is whole. The next entry (or flush) gives a held one
 * as far as it came: the pod's uid and namespace often follow the cut string, and must not be lost with it.
 */
export class EntryJoiner {
  private held: string | null = null;
  private heldLines = 0;

  constructor(
    private readonly definitions: Map<string, EventDefinition>,
    private readonly onEntry: (raw: string) => void,
  ) {}

  push(raw: string): void {
    if (this.held !== null) {
      if (!entryStart.test(raw) && this.heldLines < maxEntryLines) {
        this.held = `${this.held}\n${raw}`;
        this.heldLines++;
        if (!entryCut(this.held, this.definitions)) this.flush();
        return;
      }
      this.flush();
    }
    if (entryCut(raw, this.definitions)) {
      this.held = raw;
      this.heldLines = 1;
      return;
    }
    this.onEntry(raw);
  }

  /** Gives the held entry as far as it came (the reader ended). */
  flush(): void {
    const held = this.held;
    this.held = null;
    this.heldLines = 0;
    if (held !== null) this.onEntry(held);
  }
}
