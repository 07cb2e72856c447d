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

export type BpftraceOutput =
  | { type: 'probe'; line: ProbeLine }
  | { type: 'attached'; probes: number }
  | { type: 'lost'; count: number }
  | { type: 'other'; text: string }
  | { type: 'malformed'; text: string; why: string };

/** Parses the tab-separated data of one printf; a line that does not fit says why. */
export function parseProbeLine(data: string): ProbeLine | string {
  const text = data.endsWith('\n') ? data.slice(0, -1) : data;
  const parts = text.split('\t');
  const [tag, ns, pid, tid, ...fields] = parts;
  if (tag === undefined || !/^[a-z_]+$/.test(tag))
    return `no probe tag at the start of "${text.slice(0, 60)}"`;
  if (ns === undefined || !/^\d+$/.test(ns)) return `${tag}: timestamp "${ns}" is not a number`;
  if (pid === undefined || !/^\d+$/.test(pid) || tid === undefined || !/^\d+$/.test(tid)) {
    return `${tag}: pid/tid "${pid}"/"${tid}" are not numbers`;
  }
  return { tag, ns: BigInt(ns), pid: Number(pid), tid: Number(tid), fields };
}

/**
 * One line of `bpftrace -f json`. Lost events arrive as a `lost_events` object (newer bpftrace) or as the
 * text "Lost N events" (0.17 prints it on stderr; the runner passes stderr lines here too).
 */
export function parseBpftraceLine(raw: string): BpftraceOutput {
  if (raw.trim() === '') return { type: 'other', text: '' };
  const lost = /Lost (\d+) events/.exec(raw);
  if (lost?.[1] && !raw.startsWith('{')) return { type: 'lost', count: Number(lost[1]) };
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

const allEscapes = /^(?:\\x[0-9a-fA-F]{2})*$/;

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
  // The common case, %rx text, decodes as hex in one call.
  if (format === 'rx' && allEscapes.test(text)) {
    // A copy of its own: a Buffer may share a pooled ArrayBuffer at an offset.
    return new Uint8Array(Buffer.from(text.replaceAll('\\x', ''), 'hex'));
  }
  const escapesOnly =
    format === undefined ? /^(?:\\x[0-9a-fA-F]{2})*$/.test(text) : format === 'rx';
  const out: number[] = [];
  let i = 0;
  while (i < text.length) {
    const code = text.charCodeAt(i);
    if (code === 0x5c && text[i + 1] === 'x' && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 2, i + 4))) {
      const byte = Number.parseInt(text.slice(i + 2, i + 4), 16);
      if (escapesOnly || byte < 0x20 || byte > 0x7e) {
        out.push(byte);
        i += 4;
        continue;
      }
    }
    const point = text.codePointAt(i) ?? code;
    if (point <= 0xff) out.push(point);
    else out.push(...new TextEncoder().encode(String.fromCodePoint(point)));
    i += point > 0xffff ? 2 : 1;
  }
  return Uint8Array.from(out);
}
