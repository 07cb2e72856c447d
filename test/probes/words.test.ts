// Buffers printed as words (src/probes/program.ts withWords): real bpftrace printing a buffer of a real process,
// read back by the decoder podwire uses, and random buffers as %llx prints them.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { bytesOfWords, parseBpftraceLine } from '../../src/decode/lines.js';
import { withWords } from '../../src/probes/program.js';
import { onPath } from '../../src/probes/tied.js';
import { isRoot } from '../lab/node.js';
import { prng } from '../prng.js';

/** The text printf("%llx") gives for each 8 bytes (little-endian), space-separated: what bpftrace prints. */
function asWords(bytes: Uint8Array): string {
  const words: string[] = [];
  for (let at = 0; at < bytes.length; at += 8) {
    const word = new Uint8Array(8);
    word.set(bytes.subarray(at, at + 8));
    words.push(Buffer.from(word).readBigUInt64LE().toString(16));
  }
  return words.join(' ');
}

describe('buffers printed as words', () => {
  it('gives back random buffers, chunked as the probes chunk them and cut at the length reported', () => {
    const random = prng(7);
    for (let round = 0; round < 2000; round++) {
      // Many zero bytes, as in netlink headers and padding: words with few digits.
      const bytes = Uint8Array.from({ length: Math.floor(random() * 600) }, () =>
        random() < 0.4 ? 0 : Math.floor(random() * 256),
      );
      const chunks: string[] = [];
      for (let at = 0; at < bytes.length || at === 0; at += 192) {
        // The probe reads whole words past the end: what follows the bytes is whatever memory holds.
        const chunk = new Uint8Array(192).map(() => Math.floor(random() * 256));
        chunk.set(bytes.subarray(at, at + 192));
        chunks.push(asWords(chunk));
      }
      const length = Math.min(bytes.length, Math.floor(random() * (bytes.length + 10)));
      expect([...bytesOfWords(chunks, length)]).toEqual([...bytes.subarray(0, length)]);
    }
  });

  it('stops at text that is not words, with the bytes before it, and never throws', () => {
    expect([...bytesOfWords(['4030201 x', '0'], 100)]).toEqual([1, 2, 3, 4, 0, 0, 0, 0]);
    expect([...bytesOfWords(['11111111111111111'], 8)]).toEqual([]);
    expect([...bytesOfWords(['', '  '], 8)]).toEqual([]);
    for (const garbage of ['\\\\x41', '{"a":1}', 'ffff ', ' 1', '\\u0041'])
      expect(() => bytesOfWords([garbage], 64)).not.toThrow();
  });
});

const why = !isRoot
  ? 'needs root: it runs bpftrace'
  : !onPath('bpftrace')
    ? 'needs bpftrace: npm run setup installs it'
    : '';

describe.skipIf(why !== '')(`words from real bpftrace${why ? ` (skipped: ${why})` : ''}`, () => {
  it('are the bytes 0-255 a process holds, as 256 bytes of a printf', { timeout: 60_000 }, () => {
    // perl passes a string to syscall() as a pointer: getpgid(marker, buffer) puts its address in the second
    // argument register, which raw_syscalls:sys_enter shows. 121 is getpgid on x86-64.
    const marker = 4_194_304 + 29;
    const program = `tracepoint:raw_syscalls:sys_enter / args->id == 121 && args->args[0] == ${marker} / {
  $buf = (uint64)args->args[1];
  printf("words\\t%llu\\t%d\\t%d\\t${withWords('{{WORDS_FORMAT 256}}')}\\n", nsecs, pid, tid, ${withWords('{{WORDS 256 $buf}}')});
  exit();
}
BEGIN { printf("ready\\n"); system("perl -e 'syscall(121, ${marker}, join(\\"\\", map { chr } 0..255))'"); }`;
    const output = execFileSync('bpftrace', ['--unsafe', '-f', 'json', '-e', program], {
      encoding: 'utf8',
      timeout: 50_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const line = output
      .split('\n')
      .map((raw) => parseBpftraceLine(raw))
      .find((parsed) => parsed.type === 'probe' && parsed.line.tag === 'words');
    if (line?.type !== 'probe') throw new Error(`no words line in: ${output.slice(0, 300)}`);
    const text = line.line.json.slice(line.line.at, line.line.end);
    expect(text).toMatch(/^[0-9a-f]+( [0-9a-f]+){31}$/);
    expect([...bytesOfWords([text], 256)]).toEqual(Array.from({ length: 256 }, (_, i) => i));
  });
});
