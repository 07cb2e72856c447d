// bpftrace's JSON lines read in place: fields unescaped only when read, buffers decoded from the escaped text.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  bytesFromBpftraceBuf,
  bytesOfEscapedChunks,
  FieldReader,
  type ProbeLine,
  parseBpftraceLine,
} from '../../src/decode/lines.js';
import { prng } from '../prng.js';

/** A line as `bpftrace -f json` prints a printf of `data`. */
const printed = (data: string) => `{"type": "printf", "data": ${JSON.stringify(data)}}`;

function probeLine(raw: string): ProbeLine {
  const parsed = parseBpftraceLine(raw);
  if (parsed.type !== 'probe') throw new Error(`not a probe line: ${JSON.stringify(parsed)}`);
  return parsed.line;
}

/** How bpftrace 0.17 prints buf() bytes (seen in buf-formats.ndjson): %rx every byte escaped, %r printables as themselves. */
function printBuf(bytes: Uint8Array, format: 'r' | 'rx'): string {
  let text = '';
  for (const byte of bytes)
    text +=
      format === 'r' && byte >= 0x20 && byte <= 0x7e
        ? String.fromCharCode(byte)
        : `\\x${byte.toString(16).padStart(2, '0')}`;
  return text;
}

/** The text between the quotes of a JSON string: what FieldReader.restEscaped gives. */
const escaped = (text: string) => JSON.stringify(text).slice(1, -1);

describe('probe lines read in place', () => {
  it('reads the leading fields and each later field, unescaping only what has escapes', () => {
    const line = probeLine(
      printed(
        'cri_arg\t18755373456000\t22314\t22319\tc000651520\tname\tsay "hi"\\there\tand more\n',
      ),
    );
    expect(line).toMatchObject({ tag: 'cri_arg', ns: 18755373456000n, pid: 22314, tid: 22319 });
    const fields = new FieldReader().reset(line);
    expect(fields.string()).toBe('c000651520');
    expect(fields.string()).toBe('name');
    // The rest keeps its tabs; quotes and backslashes come back as they were printed.
    expect(fields.rest()).toBe('say "hi"\\there\tand more');
    expect(fields.string()).toBe('');
    expect(fields.int()).toBeNaN();
  });

  it('reads integers, negative ones too, and gives NaN for a field that is not one', () => {
    const fields = new FieldReader().reset(
      probeLine(printed('nl_recv\t5\t1\t1\t-1\t36\t4026531833\tx1\t12345678901234567\n')),
    );
    expect([fields.int(), fields.int(), fields.int(), fields.int()]).toEqual([
      -1,
      36,
      4026531833,
      Number.NaN,
    ]);
    expect(fields.int()).toBe(Number('12345678901234567'));
  });

  it('keeps a timestamp past 2^53 exact', () => {
    expect(probeLine(printed('cni_exit\t9007199254740993\t1\t1\t0\n')).ns).toBe(9007199254740993n);
  });

  it('takes a literal backslash before the final n as text, not as the newline escape', () => {
    const fields = new FieldReader().reset(probeLine(printed('nl_extack\t5\t1\t1\tends in \\n')));
    expect(fields.rest()).toBe('ends in \\n');
  });

  it("reads the CRI reader's compact JSON the same way", () => {
    const line = probeLine(
      '{"type":"printf","data":"cri_return\\t7\\t1\\t2\\tRunPodSandbox\\tc0\\t0\\tab\\n"}',
    );
    const fields = new FieldReader().reset(line);
    expect([fields.string(), fields.string(), fields.string(), fields.string()]).toEqual([
      'RunPodSandbox',
      'c0',
      '0',
      'ab',
    ]);
  });

  it('does not take a line whose last quote is escaped as a printf', () => {
    expect(parseBpftraceLine('{"type": "printf", "data": "cni_exit\\t1\\t1\\t1\\"}').type).toBe(
      'malformed',
    );
  });

  it('says which leading field is wrong', () => {
    const why = (data: string) => {
      const parsed = parseBpftraceLine(printed(data));
      return parsed.type === 'malformed' ? parsed.why : parsed.type;
    };
    expect(why('cni_exit\t12x\t1\t1\t0')).toBe('cni_exit: timestamp "12x" is not a number');
    expect(why('cni_exit\t12\t1\t\t0')).toBe('cni_exit: pid/tid "1"/"" are not numbers');
    expect(why('Cni_exit\t12\t1\t1')).toBe('no probe tag at the start of "Cni_exit\t12\t1\t1"');
    expect(why('cni_exit\t12\t1\t1')).toBe('probe');
  });
});

describe('buffers decoded from the escaped JSON text', () => {
  const formats = readFileSync(
    new URL('../fixtures/rtnetlink/buf-formats.ndjson', import.meta.url),
    'utf8',
  )
    .split('\n')
    .filter((line) => line !== '');
  const allBytes = Array.from({ length: 256 }, (_, i) => i);

  it("reads bpftrace's own %r and %rx lines for the bytes 0-255 (buf-formats.ndjson)", () => {
    for (const format of ['r', 'rx'] as const) {
      // The bytes= text of each half as it stands in the JSON line, escapes not resolved.
      const halves = formats
        .filter((line) => line.includes(`bufformat format=${format} `))
        .map((line) => line.slice(line.indexOf(' bytes=') + 7, line.lastIndexOf('\\n"}')));
      expect(halves).toHaveLength(2);
      expect([...bytesOfEscapedChunks(halves, format, 256)]).toEqual(allBytes);
    }
  });

  it('gives the bytes bytesFromBpftraceBuf gives for random buffers, chunked as the probes chunk them', () => {
    const random = prng(11);
    for (let round = 0; round < 2000; round++) {
      const format = round % 2 === 0 ? 'r' : 'rx';
      // Mostly printable text with some control bytes and backslashes, as plugin output and argv are.
      const bytes = Uint8Array.from({ length: Math.floor(random() * 600) }, () =>
        random() < 0.7 ? 0x20 + Math.floor(random() * 95) : Math.floor(random() * 256),
      );
      const chunks: Uint8Array[] = [];
      for (let at = 0; at < bytes.length || at === 0; at += 192)
        chunks.push(bytes.subarray(at, at + 192));
      const texts = chunks.map((chunk) => printBuf(chunk, format));
      const slow = texts.flatMap((text) => [...bytesFromBpftraceBuf(text, format)]);
      const length = Math.floor(random() * (bytes.length + 10));
      const fast = bytesOfEscapedChunks(texts.map(escaped), format, length);
      expect([...fast]).toEqual(slow.slice(0, length));
      if (format === 'rx') expect([...fast]).toEqual([...bytes.subarray(0, length)]);
    }
  });

  it('falls back to unescaping first for text the fast path does not read (a \\u escape)', () => {
    expect([...bytesOfEscapedChunks(['a\\u0001b'], 'r', 10)]).toEqual([0x61, 0x01, 0x62]);
    expect([...bytesOfEscapedChunks(['\\\\x41\\u005cx42'], 'rx', 10)]).toEqual([0x41, 0x42]);
  });

  it('gives every byte when the reported length is not a number', () => {
    expect([...bytesOfEscapedChunks(['\\\\x01\\\\x02'], 'rx', Number.NaN)]).toEqual([1, 2]);
  });
});
