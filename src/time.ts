// Time as podwire prints it: RFC 3339 with nanoseconds, from kernel monotonic or epoch nanoseconds.

/** The last second formatted: records hold many timestamps within the same second. */
let cachedSecond = -1n;
let cachedPrefix = '';

/** Nanoseconds since the epoch as RFC 3339 UTC with all nine fractional digits. */
export function rfc3339Nanos(epochNs: bigint): string {
  const seconds = epochNs / 1_000_000_000n;
  if (seconds !== cachedSecond) {
    cachedSecond = seconds;
    cachedPrefix = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  }
  const fraction = (epochNs % 1_000_000_000n).toString().padStart(9, '0');
  return `${cachedPrefix}.${fraction}Z`;
}

/**
 * realtime - monotonic, measured now: kernel timestamps (CLOCK_MONOTONIC, as bpftrace's nsecs) plus this offset
 * are wall-clock nanoseconds. Node's hrtime is CLOCK_MONOTONIC on Linux; performance's clock gives
 * realtime to about a microsecond, so wall times are that exact while durations keep the kernel's nanoseconds.
 */
export function monotonicToRealtimeOffset(): bigint {
  const before = process.hrtime.bigint();
  const realtime = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
  const after = process.hrtime.bigint();
  return realtime - (before + after) / 2n;
}

export const millis = (from: bigint, to: bigint): number => Number(to - from) / 1e6;

/** bigint has no Math.min: the earliest and latest of a non-empty list of timestamps. */
// biome-ignore lint/complexity/useMathMinMax: Math.min throws on bigint
export const earliest = (values: bigint[]): bigint => values.reduce((a, b) => (b < a ? b : a));
// biome-ignore lint/complexity/useMathMinMax: Math.max throws on bigint
export const latest = (values: bigint[]): bigint => values.reduce((a, b) => (b > a ? b : a));

/** RFC 3339 UTC with up to nine fractional digits (as rfc3339Nanos writes it) back to epoch nanoseconds. */
const secondsOfDay = new Map<string, bigint>();

export function epochNanos(text: string): bigint {
  // The fast way for what rfc3339Nanos writes (nine digits): the date and time part parsed once per second seen.
  if (text.length === 30 && text[19] === '.' && text[29] === 'Z') {
    const whole = text.slice(0, 19);
    let seconds = secondsOfDay.get(whole);
    if (seconds === undefined) {
      const ms = Date.parse(`${whole}Z`);
      if (Number.isNaN(ms)) throw new Error(`"${text}" is not an RFC 3339 UTC time`);
      seconds = BigInt(ms / 1000) * 1_000_000_000n;
      if (secondsOfDay.size > 4096) secondsOfDay.clear();
      secondsOfDay.set(whole, seconds);
    }
    const fraction = text.slice(20, 29);
    if (/^\d{9}$/.test(fraction)) return seconds + BigInt(fraction);
  }
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z$/.exec(text);
  if (!match?.[1]) throw new Error(`"${text}" is not an RFC 3339 UTC time`);
  const seconds = BigInt(Date.parse(`${match[1]}Z`) / 1000);
  return seconds * 1_000_000_000n + BigInt((match[2] ?? '').padEnd(9, '0'));
}
