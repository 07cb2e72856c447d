// Reads what bpftrace prints with `-f json`: one JSON object a line, our probes' printf lines inside.

/** One printf line of a podwire probe: tab-separated, always starting with tag, kernel ns, pid, tid. */
export interface ProbeLine {
  tag: string;
  /** bpftrace's nsecs: CLOCK_MONOTONIC nanoseconds. */
  ns: bigint;
  pid: number;
  tid: number;
  fields: string[];
}

/** How `bpftrace -f json` starts a printf line; the data string follows (its opening quote is the last char). */
const printfPrefix = '{"type": "printf", "data": "';

export type BpftraceOutput =
  | { type: 'probe'; line: ProbeLine }
  | { type: 'attached'; probes: number }
  | { type: 'lost'; count: number }
  | { type: 'other'; text: string }
  | { type: 'malformed'; text: string; why: string };

/** Parses the tab-separated data of one printf; a line that does not fit says why. */
export function parseProbeLine(data: string): ProbeLine | string {
  const end = data.endsWith('\n') ? data.length - 1 : data.length;
  // The four leading fields by index: this runs for every line podwire reads.
  const t1 = data.indexOf('\t');
  const t2 = t1 < 0 ? -1 : data.indexOf('\t', t1 + 1);
  const t3 = t2 < 0 ? -1 : data.indexOf('\t', t2 + 1);
  const t4 = t3 < 0 ? -1 : data.indexOf('\t', t3 + 1);
  const tag = data.slice(0, t1 < 0 ? end : t1);
  if (!isTag(tag)) return `no probe tag at the start of "${data.slice(0, Math.min(end, 60))}"`;
  const ns = t1 < 0 ? undefined : data.slice(t1 + 1, t2 < 0 ? end : t2);
  if (ns === undefined || !isDigits(ns)) return `${tag}: timestamp "${ns}" is not a number`;
  const pid = t2 < 0 ? undefined : data.slice(t2 + 1, t3 < 0 ? end : t3);
  const tid = t3 < 0 ? undefined : data.slice(t3 + 1, t4 < 0 ? end : t4);
  if (pid === undefined || !isDigits(pid) || tid === undefined || !isDigits(tid)) {
    return `${tag}: pid/tid "${pid}"/"${tid}" are not numbers`;
  }
  const fields = t4 < 0 ? [] : data.slice(t4 + 1, end).split('\t');
  return { tag, ns: BigInt(ns), pid: Number(pid), tid: Number(tid), fields };
}

function isDigits(text: string): boolean {
  if (text.length === 0) return false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x30 || code > 0x39) return false;
  }
  return true;
}

function isTag(text: string): boolean {
  if (text.length === 0) return false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code !== 0x5f && (code < 0x61 || code > 0x7a)) return false;
  }
  return true;
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
  // Nearly every line is a printf: parse only its string, not the object around it.
  if (raw.startsWith(printfPrefix) && raw.endsWith('"}')) {
    let data: unknown;
    try {
      data = JSON.parse(raw.slice(printfPrefix.length - 1, -1));
    } catch {
      data = undefined;
    }
    if (typeof data === 'string') {
      const line = parseProbeLine(data);
      return typeof line === 'string'
        ? { type: 'malformed', text: data.slice(0, 200), why: line }
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
const hexValue = new Int8Array(128).fill(-1);
for (let digit = 0; digit < 16; digit++) {
  hexValue[digit.toString(16).charCodeAt(0)] = digit;
  hexValue[digit.toString(16).toUpperCase().charCodeAt(0)] = digit;
}

/** The byte of the escape `\xHH` at `at`, or -1 when there is none there. */
function escapeAt(text: string, at: number): number {
  if (text.charCodeAt(at) !== 0x5c || text.charCodeAt(at + 1) !== 0x78 || at + 3 >= text.length)
    return -1;
  const high = hexValue[text.charCodeAt(at + 2)] ?? -1;
  const low = hexValue[text.charCodeAt(at + 3)] ?? -1;
  return high < 0 || low < 0 ? -1 : high * 16 + low;
}

function onlyEscapes(text: string): boolean {
  if (text.length % 4 !== 0) return false;
  for (let at = 0; at < text.length; at += 4) if (escapeAt(text, at) < 0) return false;
  return true;
}

/**
 * The bytes of a bpftrace `buf()` as printed by printf (bpftrace 0.17, seen in buf-formats.ndjson):
 * `%rx` prints every byte as `\xNN`; `%r` prints bytes 0x20-0x7e as themselves (the backslash
 * too, unescaped) and the others as `\xNN`. So in `%r` text an escape of a printable byte can only
 * be a literal backslash followed by 'x' and two digits; only a literal backslash-x before the
 * digits of an unprintable byte stays ambiguous (read as that byte). Without `format`, text made of
 * escapes alone is `%rx` and anything else `%r`: they differ only if the data was nothing but
 * literal "\xNN" text. Characters above 0xff (never printed by bpftrace) are taken as UTF-8.
 */
export function bytesFromBpftraceBuf(text: string, format?: 'r' | 'rx'): Uint8Array {
  if (format === 'rx' && text.length % 4 === 0) {
    // %rx: every byte is \xHH; decoded in one pass, falling back to the general loop on anything else.
    const bytes = new Uint8Array(text.length / 4);
    let ok = true;
    for (let at = 0, n = 0; at < text.length; at += 4, n++) {
      const byte = escapeAt(text, at);
      if (byte < 0) {
        ok = false;
        break;
      }
      bytes[n] = byte;
    }
    if (ok) return bytes;
  }
  const escapesOnly = format === 'rx' || (format === undefined && onlyEscapes(text));
  const out = new Uint8Array(text.length * 4);
  let length = 0;
  let i = 0;
  while (i < text.length) {
    const byte = escapeAt(text, i);
    if (byte >= 0 && (escapesOnly || byte < 0x20 || byte > 0x7e)) {
      out[length++] = byte;
      i += 4;
      continue;
    }
    const point = text.codePointAt(i) ?? 0;
    if (point <= 0xff) out[length++] = point;
    else for (const b of new TextEncoder().encode(String.fromCodePoint(point))) out[length++] = b;
    i += point > 0xffff ? 2 : 1;
  }
  return out.slice(0, length);
}
