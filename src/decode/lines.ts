// Reads what bpftrace prints with `-f json`: one JSON object a line, our probes' printf lines inside.

/**
 * One printf line of a podwire probe: tab-separated, always starting with tag, kernel ns, pid, tid. The text is
 * kept as bpftrace's JSON wrote it (a tab is the two characters `\t`, a backslash is `\\`): a field is
 * unescaped only when it is read (FieldReader).
 */
export interface ProbeLine {
  tag: string;
  /** bpftrace's nsecs: CLOCK_MONOTONIC nanoseconds. */
  ns: bigint;
  pid: number;
  tid: number;
  /** The JSON string body holding the line; the fields after tid are `json.slice(at, end)`, still escaped. */
  json: string;
  at: number;
  end: number;
}

/** How `bpftrace -f json` starts a printf line; the data string follows (its opening quote is the last char). */
const printfPrefix = '{"type": "printf", "data": "';
/** The same without spaces, as podwire's own CRI uprobe reader writes it. */
const compactPrintfPrefix = '{"type":"printf","data":"';

export type BpftraceOutput =
  | { type: 'probe'; line: ProbeLine }
  | { type: 'attached'; probes: number }
  | { type: 'lost'; count: number }
  | { type: 'other'; text: string }
  | { type: 'malformed'; text: string; why: string };

const backslash = 0x5c;

/** Whether the escape `\<letter>` ends the JSON string body at `stop` (an odd run of backslashes before it). */
function endsWithEscape(json: string, start: number, stop: number, letter: number): boolean {
  if (stop - start < 2 || json.charCodeAt(stop - 1) !== letter) return false;
  let run = 0;
  for (let i = stop - 2; i >= start && json.charCodeAt(i) === backslash; i--) run++;
  return run % 2 === 1;
}

/** Whether the escape `\t` (a field separator) starts at `at`; callers know `at` is not inside an escape. */
const tabAt = (json: string, at: number): boolean =>
  json.charCodeAt(at) === backslash && json.charCodeAt(at + 1) === 0x74;

/** Where the field that starts at `from` ends: at the next `\t` escape, or at `end`. */
function fieldEnd(json: string, from: number, end: number): number {
  for (let i = from; i < end; i++) {
    if (json.charCodeAt(i) !== backslash) continue;
    if (json.charCodeAt(i + 1) === 0x74) return i;
    i++; // the escaped character, which may itself be a backslash
  }
  return end;
}

/** Where the run of decimal digits from `from` ends. */
function digitsEnd(json: string, from: number, end: number): number {
  let i = from;
  while (i < end) {
    const code = json.charCodeAt(i);
    if (code < 0x30 || code > 0x39) break;
    i++;
  }
  return i;
}

/** What JSON.parse must look at in a string body: an escape, or what JSON forbids there (a quote, a control). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const notPlainJson = /["\\\x00-\x1f]/;

/**
 * A JSON string body's value (a field or FieldReader.restEscaped's text); throws on what a JSON string cannot hold
 * (an escape JSON lacks, a bare quote or control character: a damaged line read in place).
 */
export function unescapeJson(body: string): string {
  return notPlainJson.test(body) ? (JSON.parse(`"${body}"`) as string) : body;
}

/** The decimal digits json[from, to) as a number (whole up to 15 digits). */
function digitsValue(json: string, from: number, to: number): number {
  if (to - from > 15) return Number(json.slice(from, to));
  let value = 0;
  for (let i = from; i < to; i++) value = value * 10 + json.charCodeAt(i) - 0x30;
  return value;
}

/**
 * The tags met so far, by length: a line's tag is found among them in place rather than cut out as a string of its
 * own (one more string a line, and one the plans' Map would hash again). Bounded: a damaged recording's odd tags
 * past the first few are cut out as before.
 */
const tagsByLength: string[][] = [];
const maxTagsKept = 256;
const maxTagLength = 32;
let tagsKept = 0;

/** json[start, end) as a string: the same string each time for the same tag. */
function tagOf(json: string, start: number, end: number): string {
  const length = end - start;
  if (length > maxTagLength) return json.slice(start, end);
  const known = tagsByLength[length];
  if (known !== undefined) for (const tag of known) if (json.startsWith(tag, start)) return tag;
  const tag = json.slice(start, end);
  if (tagsKept < maxTagsKept) {
    tagsKept++;
    if (known === undefined) tagsByLength[length] = [tag];
    else known.push(tag);
  }
  return tag;
}

/**
 * Parses the JSON string body json[start, stop) of one printf; a line that does not fit says why. The four
 * leading fields are read in place: this runs for every line podwire reads.
 */
function parseEscapedProbeLine(json: string, start: number, stop: number): ProbeLine | string {
  const end = endsWithEscape(json, start, stop, 0x6e /* n */) ? stop - 2 : stop;
  let at = start;
  while (at < end) {
    const code = json.charCodeAt(at);
    if (code !== 0x5f && (code < 0x61 || code > 0x7a)) break;
    at++;
  }
  const tagEnd = at;
  const nsEnd = tagEnd < end && tabAt(json, tagEnd) ? digitsEnd(json, tagEnd + 2, end) : -1;
  const pidEnd = nsEnd > tagEnd + 2 && tabAt(json, nsEnd) ? digitsEnd(json, nsEnd + 2, end) : -1;
  const tidEnd = pidEnd > nsEnd + 2 && tabAt(json, pidEnd) ? digitsEnd(json, pidEnd + 2, end) : -1;
  const fieldsAt =
    tidEnd <= pidEnd + 2 ? -1 : tidEnd === end ? end : tabAt(json, tidEnd) ? tidEnd + 2 : -1;
  if (tagEnd === start || fieldsAt < 0) return whyNotProbeLine(json, start, end);
  const nsDigits = nsEnd - tagEnd - 2;
  return {
    tag: tagOf(json, start, tagEnd),
    ns:
      nsDigits <= 15
        ? BigInt(digitsValue(json, tagEnd + 2, nsEnd))
        : BigInt(json.slice(tagEnd + 2, nsEnd)),
    pid: digitsValue(json, nsEnd + 2, pidEnd),
    tid: digitsValue(json, pidEnd + 2, tidEnd),
    json,
    at: fieldsAt,
    end,
  };
}

/** The one line that says why a printf is not a probe line (the slow path: only for lines that are not). */
function whyNotProbeLine(json: string, start: number, end: number): string {
  let data: string;
  try {
    data = unescapeJson(json.slice(start, end));
  } catch {
    return 'an escape in the printf text is not JSON';
  }
  const [tag = '', ns, pid, tid] = data.split('\t');
  const digits = (text: string | undefined) => text !== undefined && /^[0-9]+$/.test(text);
  if (!/^[a-z_]+$/.test(tag)) return `no probe tag at the start of "${data.slice(0, 60)}"`;
  if (!digits(ns)) return `${tag}: timestamp "${ns}" is not a number`;
  if (!digits(pid) || !digits(tid)) return `${tag}: pid/tid "${pid}"/"${tid}" are not numbers`;
  return `${tag}: fields are not tab-separated`;
}

/** Parses the tab-separated data of one printf (its text, escapes resolved); a line that does not fit says why. */
export function parseProbeLine(data: string): ProbeLine | string {
  const json = JSON.stringify(data);
  return parseEscapedProbeLine(json, 1, json.length - 1);
}

/**
 * Reads the fields after tid of one probe line in order, unescaping only what it returns. One per assembler,
 * reset for each line: the hot path allocates no reader.
 */
export class FieldReader {
  private json = '';
  private at = 0;
  private end = 0;

  reset(line: ProbeLine): this {
    this.json = line.json;
    this.at = line.at;
    this.end = line.end;
    return this;
  }

  /** The next field's text ('' when the line has no more). */
  string(): string {
    if (this.at > this.end) return '';
    const to = fieldEnd(this.json, this.at, this.end);
    const text = this.json.slice(this.at, to);
    this.at = to + 2;
    return unescapeJson(text);
  }

  /** The next field as bpftrace's JSON wrote it: for words, where anything but hex digits and spaces is damage. */
  escaped(): string {
    if (this.at > this.end) return '';
    const to = fieldEnd(this.json, this.at, this.end);
    const text = this.json.slice(this.at, to);
    this.at = to + 2;
    return text;
  }

  /** The next field as a decimal integer, NaN when it is not one or missing. */
  int(): number {
    if (this.at > this.end) return Number.NaN;
    const to = fieldEnd(this.json, this.at, this.end);
    const from = this.at;
    this.at = to + 2;
    const negative = this.json.charCodeAt(from) === 0x2d;
    const digits = negative ? from + 1 : from;
    if (digits === to || digitsEnd(this.json, digits, to) !== to) return Number.NaN;
    const value = digitsValue(this.json, digits, to);
    return negative ? -value : value;
  }

  /** Every field from here on, tabs included, escapes resolved. */
  rest(): string {
    return unescapeJson(this.restEscaped());
  }

  /** Every field from here on as bpftrace's JSON wrote it: a chunk kept until its event is whole. */
  restEscaped(): string {
    const text = this.at > this.end ? '' : this.json.slice(this.at, this.end);
    this.at = this.end + 2;
    return text;
  }
}

/**
 * One line of `bpftrace -f json`. Lost events arrive as a `lost_events` object (newer bpftrace) or as the
 * text "Lost N events" (0.17 prints it on stderr; the runner passes stderr lines here too).
 */
export function parseBpftraceLine(raw: string): BpftraceOutput {
  if (raw.charCodeAt(0) !== 0x7b /* { */) {
    if (raw.trim() === '') return { type: 'other', text: '' };
    const lost = /Lost (\d+) events/.exec(raw);
    if (lost?.[1]) return { type: 'lost', count: Number(lost[1]) };
  }
  // Nearly every line is a printf: its string is read in place, not parsed with the object around it.
  const stop = raw.length - 2;
  if (raw.charCodeAt(stop) === 0x22 && raw.charCodeAt(stop + 1) === 0x7d /* "} */) {
    const start = raw.startsWith(printfPrefix)
      ? printfPrefix.length
      : raw.startsWith(compactPrintfPrefix)
        ? compactPrintfPrefix.length
        : -1;
    // The closing quote must not be an escaped one, and the text ends with printf's newline: a line damaged there
    // (or cut and closed by something else) is left to JSON.parse, which finds what is wrong with it.
    if (
      start >= 0 &&
      start <= stop &&
      !endsWithEscape(raw, start, stop + 1, 0x22) &&
      endsWithEscape(raw, start, stop, 0x6e /* n */)
    ) {
      const line = parseEscapedProbeLine(raw, start, stop);
      return typeof line === 'string'
        ? { type: 'malformed', text: raw.slice(start, Math.min(stop, start + 200)), why: line }
        : { type: 'probe', line };
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return { type: 'malformed', text: raw.slice(0, 200), why: 'not JSON' };
  }
  if (typeof parsed !== 'object' || parsed === null)
    return { type: 'malformed', text: raw.slice(0, 200), why: 'not an object' };
  const object = parsed as { type?: unknown; data?: unknown };
  switch (object.type) {
    case 'printf': {
      if (typeof object.data !== 'string')
        return { type: 'malformed', text: raw.slice(0, 200), why: 'printf without data' };
      const line = parseProbeLine(object.data);
      return typeof line === 'string'
        ? { type: 'malformed', text: object.data.slice(0, 200), why: line }
        : { type: 'probe', line };
    }
    case 'attached_probes': {
      const probes = (object.data as { probes?: unknown } | undefined)?.probes;
      return { type: 'attached', probes: typeof probes === 'number' ? probes : 0 };
    }
    case 'lost_events': {
      const events = (object.data as { events?: unknown } | undefined)?.events;
      return { type: 'lost', count: typeof events === 'number' ? events : 0 };
    }
    default:
      return { type: 'other', text: raw.slice(0, 200) };
  }
}

/** Value of one hex digit's char code, or -1: a table, since this runs for every byte podwire reads. */
export const hexValue = new Int8Array(128).fill(-1);
for (let digit = 0; digit < 16; digit++) {
  hexValue[digit.toString(16).charCodeAt(0)] = digit;
  hexValue[digit.toString(16).toUpperCase().charCodeAt(0)] = digit;
}

/** A hex digit's value by any char code (what charCodeAt gives), -1 for the others: no range check on the way. */
const hexDigit = new Int8Array(0x10000).fill(-1);
for (let code = 0; code < hexValue.length; code++) hexDigit[code] = hexValue[code] as number;

/**
 * The bytes of a buffer printed in words (src/probes/program.ts wordsFormat): little-endian 64-bit words in hex
 * without leading zeros, space-separated, so a word's last two digits are its first byte. Decoded into `out` at
 * `offset`, up to `limit` bytes; returns the offset after them, or its bitwise not (negative) after the words
 * before text that is not one (a word is checked whole, past `limit` too).
 */
function wordsInto(text: string, out: Uint8Array, offset: number, limit: number): number {
  let n = offset;
  let start = 0;
  while (start < text.length && n < limit) {
    let end = text.indexOf(' ', start);
    if (end < 0) end = text.length;
    const digits = end - start;
    if (digits === 0 || digits > 16) return ~n;
    if (digits === 16 && n + 8 <= limit) {
      // A whole word (most are): its 8 bytes without a check per digit; any digit that is not one makes `bad`
      // negative.
      let bad = 0;
      for (let byte = 0, at = end - 2; byte < 8; byte++, at -= 2) {
        const high = hexDigit[text.charCodeAt(at)] as number;
        const low = hexDigit[text.charCodeAt(at + 1)] as number;
        bad |= high | low;
        out[n + byte] = (high << 4) | low;
      }
      if (bad < 0) return ~n;
      n += 8;
      start = end + 1;
      continue;
    }
    const word = n;
    let at = end;
    for (let byte = 0; byte < 8; byte++) {
      let value = 0;
      if (at > start) {
        const low = hexDigit[text.charCodeAt(--at)] as number;
        if (low < 0) return ~word;
        value = low;
        if (at > start) {
          const high = hexDigit[text.charCodeAt(--at)] as number;
          if (high < 0) return ~word;
          value |= high << 4;
        }
      }
      if (n < limit) out[n++] = value;
    }
    start = end + 1;
  }
  return n;
}

/** The byte count the words in `chunks` can make at most, cut to `length` (-1: no cut). */
function bytesAtMost(chunks: string | readonly string[], length: number): number {
  let characters = 0;
  if (typeof chunks === 'string') characters = chunks.length;
  else for (const chunk of chunks) characters += chunk.length;
  // At most 8 bytes a word, and a word takes at least 2 characters with its space; bytes past `length` (the
  // probe's fixed-size read beyond what was written) are not decoded at all.
  const most = (Math.ceil(characters / 2) + 1) * 8;
  return length >= 0 && length < most ? length : most;
}

/** Whether the last bytesOfWords or textOfWords found its text all words (up to the length it was given). */
let wordsWhole = true;
export const lastWordsWhole = (): boolean => wordsWhole;

/** Decodes the words of `chunks` into out[from, limit); returns where the bytes end. */
function decodeWords(
  chunks: string | readonly string[],
  out: Uint8Array,
  from: number,
  limit: number,
): number {
  wordsWhole = false;
  if (typeof chunks === 'string') {
    const next = wordsInto(chunks, out, from, limit);
    if (next < 0) return ~next;
    wordsWhole = true;
    return next;
  }
  let n = from;
  for (const chunk of chunks) {
    if (n === limit) break;
    const next = wordsInto(chunk, out, n, limit);
    if (next < 0) return ~next;
    n = next;
  }
  wordsWhole = true;
  return n;
}

/**
 * Buffers are decoded into slabs and handed out as views of them: V8 keeps the bytes of any Uint8Array over 64
 * bytes outside its heap, which costs ~8 times a view. A slab is small so that the events still held (a handshake
 * in flight) keep little else alive; a buffer that could take more than an eighth of one gets its own.
 */
const slabSize = 8192;
let slab = new Uint8Array(slabSize);
let slabUsed = 0;

/**
 * The bytes of a buffer printed as words in `chunks` (plain ASCII, hex digits and spaces: nothing to unescape), cut
 * to the `length` the probe reported (-1: all of them). What is not words gives no bytes (and lastWordsWhole() false).
 */
export function bytesOfWords(chunks: string | readonly string[], length: number): Uint8Array {
  const most = bytesAtMost(chunks, length);
  if (most > slabSize / 8) {
    const out = new Uint8Array(most);
    const n = decodeWords(chunks, out, 0, most);
    return n === most ? out : out.slice(0, n);
  }
  if (slabUsed + most > slabSize) {
    slab = new Uint8Array(slabSize);
    slabUsed = 0;
  }
  const from = slabUsed;
  const end = decodeWords(chunks, slab, from, from + most);
  // Each view starts on 8 bytes, as an allocation of its own would.
  slabUsed = (end + 7) & ~7;
  return new Uint8Array(slab.buffer, from, end - from);
}

/** Where text is decoded from words before it is read as a string. */
let scratch = Buffer.alloc(4096);

/** The bytes of words in `chunks` read as `encoding` text: for a value kept as text, without a buffer of its own. */
export function textOfWords(
  chunks: string | readonly string[],
  length: number,
  encoding: 'latin1' | 'utf8',
): string {
  const most = bytesAtMost(chunks, length);
  if (scratch.length < most) scratch = Buffer.alloc(most);
  return scratch.toString(encoding, 0, decodeWords(chunks, scratch, 0, most));
}
