// Reads the buffers of version-1 recordings, which bpftrace printed with %r or %rx: only the upgrade needs it.
import { hexValue } from '../decode/lines.js';

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

const utf8 = new TextEncoder();

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
  const escapesOnly = format === 'rx' || (format === undefined && onlyEscapes(text));
  // Up to 3 bytes a character (UTF-8 of one above 0xff; a surrogate pair is 2 characters for 4 bytes).
  const out = new Uint8Array(text.length * 3);
  let length = 0;
  let i = 0;
  while (i < text.length) {
    const code = text.charCodeAt(i);
    if (code === 0x5c) {
      const byte = escapeAt(text, i);
      if (byte >= 0 && (escapesOnly || byte < 0x20 || byte > 0x7e)) {
        out[length++] = byte;
        i += 4;
        continue;
      }
    }
    if (code <= 0xff) {
      out[length++] = code;
      i++;
      continue;
    }
    const point = text.codePointAt(i) ?? 0;
    length += utf8.encodeInto(String.fromCodePoint(point), out.subarray(length)).written;
    i += point > 0xffff ? 2 : 1;
  }
  return out.slice(0, length);
}
