// Version-1 recordings brought to today's lines: the same bytes, values and ends, in lines the assembler knows.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Assembler } from '../../src/decode/assemble.js';
import { bytesOfWords, parseBpftraceLine } from '../../src/decode/lines.js';
import { probeLineSpec } from '../../src/decode/probe-lines.js';
import type { ProbeEvent } from '../../src/events.js';
import { bytesFromBpftraceBuf } from '../../src/recording/bpftrace-buffers.js';
import type { RecordedLine, RecordingHeader } from '../../src/recording/format.js';
import { upgrader } from '../../src/recording/upgrade.js';
import { printfData } from '../correlate/recordings.js';
import { prng } from '../prng.js';

const dir = fileURLToPath(new URL('../fixtures/recordings/', import.meta.url));
// Only version-1 fixtures need the upgrade: later ones were recorded in today's lines.
const recordings = readdirSync(dir).filter(
  (name) => name.endsWith('.ndjson') && (written(name).header.version ?? 1) === 1,
);

/** A fixture's header and lines exactly as written (not upgraded). */
function written(name: string): { header: RecordingHeader; lines: RecordedLine[] } {
  const [first, ...rest] = readFileSync(`${dir}${name}`, 'utf8').trim().split('\n');
  return {
    header: JSON.parse(first ?? '{}') as RecordingHeader,
    lines: rest.map((text) => JSON.parse(text) as RecordedLine),
  };
}

const tagOf = (line: RecordedLine) => printfData(line)?.split('\t')[0] ?? null;

/** The events and problems of `lines`, one assembler a source, as the pipeline has them. */
function assemble(lines: RecordedLine[]): { events: ProbeEvent[]; problems: string[] } {
  const assemblers = new Map<string, Assembler>();
  const events: ProbeEvent[] = [];
  const problems: string[] = [];
  for (const line of lines) {
    if (!('raw' in line)) continue;
    const parsed = parseBpftraceLine(line.raw);
    if (parsed.type !== 'probe' || parsed.line.tag === 'tick') continue;
    const assembler = assemblers.get(line.src) ?? new Assembler();
    assemblers.set(line.src, assembler);
    const out = assembler.push(parsed.line);
    events.push(...out.events);
    problems.push(...out.problems);
  }
  for (const assembler of assemblers.values()) {
    const out = assembler.flush();
    events.push(...out.events);
    problems.push(...out.problems);
  }
  return { events, problems };
}

describe.each(recordings)('upgrading %s', (name) => {
  const { header, lines } = written(name);
  const upgrade = upgrader(header);
  const upgraded = lines.flatMap((line) => upgrade(line));

  it('is a version-1 recording, and comes out in lines the probes print today, every one declared', () => {
    expect(header.version ?? 1).toBe(1);
    for (const line of upgraded) {
      const tag = tagOf(line);
      if (tag !== null) expect(probeLineSpec(tag), tag).toBeDefined();
    }
    expect(upgraded.filter((line) => !('raw' in line))).toEqual(
      lines.filter((line) => !('raw' in line)),
    );
  });

  it('is read by the assembler without a problem', () => {
    expect(assemble(upgraded).problems).toEqual([]);
  });

  it("keeps each buffer's bytes, as words", () => {
    for (const line of lines) {
      const before = upgrade(line);
      const tag = tagOf(line);
      if (!tag || !['nl_send', 'nl_recv', 'cni_out', 'sb_exec'].includes(tag)) continue;
      const old = (printfData(line) ?? '').replace(/\n$/, '').split('\t');
      const now = (printfData(before[0] as RecordedLine) ?? '').replace(/\n$/, '').split('\t');
      expect(now[0]).toBe(`${tag}_w`);
      expect(now.slice(1, -1)).toEqual(old.slice(1, now.length - 1));
      const bytes = bytesFromBpftraceBuf(
        old.slice(now.length - 1).join('\t'),
        tag.startsWith('nl_') ? 'rx' : 'r',
      );
      // Words are whole: the last one is padded with zeros.
      expect([...bytesOfWords([now.at(-1) ?? ''], -1)]).toEqual([
        ...bytes,
        ...new Array((8 - (bytes.length % 8)) % 8).fill(0),
      ]);
    }
  });

  it("leaves out cni_exit, whose code cni_gone's wait status has", () => {
    const codes = new Map<number, number>();
    for (const line of lines) {
      const [tag, , pid, , value] = (printfData(line) ?? '').split('\t');
      if (tag === 'cni_exit') codes.set(Number(pid), Number(value));
    }
    expect(upgraded.filter((line) => tagOf(line) === 'cni_exit')).toEqual([]);
    for (const event of assemble(upgraded).events)
      if (event.kind === 'cni_gone' && codes.has(event.pid))
        expect((event.status >> 8) & 0xff, `pid ${event.pid}`).toBe(codes.get(event.pid));
  });

  it('gives the same CNI variables, without the chunks printed past their end', () => {
    const variables = (events: ProbeEvent[]) =>
      events.flatMap((e) => (e.kind === 'cni_env' ? [`${e.pid} ${e.name}=${e.value}`] : []));
    const upgradedEnv = upgraded.filter((line) => tagOf(line) === 'cni_env');
    // What the lines gave before the upgrade: each chunk after one shorter than 199 characters was dropped.
    const kept: string[] = [];
    const before = new Map<string, string>();
    for (const line of lines.filter((l) => tagOf(l) === 'cni_env')) {
      const [, , , tid, index, chunk, ...text] = (printfData(line) ?? '')
        .replace(/\n$/, '')
        .split('\t');
      const key = `${tid} ${index}`;
      const previous = before.get(key);
      if (chunk !== '0' && previous !== undefined && previous.length < 199) continue;
      before.set(key, text.join('\t'));
      kept.push(printfData(line) ?? '');
    }
    expect(upgradedEnv.map(printfData)).toEqual(kept);
    const args = variables(assemble(upgraded).events).filter((v) => v.includes(' CNI_ARGS='));
    expect(args.length).toBeGreaterThan(0);
    for (const value of args) expect(value).toMatch(/K8S_POD_INFRA_CONTAINER_ID=[0-9a-f]{64}/);
  });
});

describe('the upgrade of hand-made lines', () => {
  const header: RecordingHeader = {
    kind: 'podwire-recording',
    version: 1,
    started: '2026-12-01T00:00:00.000Z',
    clockOffsetNs: '0',
    criProbes: true,
    runtime: 'containerd',
    cniBinDirs: ['/usr/lib/cni'],
  };
  const printed = (data: string) => `{"type": "printf", "data": ${JSON.stringify(data)}}`;
  /** How bpftrace 0.17 prints buf() bytes (buf-formats.ndjson): %rx every byte escaped, %r printables as they are. */
  const printBuf = (bytes: Uint8Array, format: 'r' | 'rx') =>
    [...bytes]
      .map((byte) =>
        format === 'r' && byte >= 0x20 && byte <= 0x7e
          ? String.fromCharCode(byte)
          : `\\x${byte.toString(16).padStart(2, '0')}`,
      )
      .join('');

  it('gives random buffers back as the version that recorded them read them, in chunks as the probes chunk them', () => {
    const random = prng(11);
    for (let round = 0; round < 500; round++) {
      const upgrade = upgrader(header);
      const send = round % 2 === 0;
      const format = send ? 'rx' : 'r';
      const bytes = Uint8Array.from(
        { length: 1 + Math.floor(random() * (send ? 384 : 768)) },
        () => (random() < 0.7 ? 0x20 + Math.floor(random() * 95) : Math.floor(random() * 256)),
      );
      const lines: RecordedLine[] = [];
      const read: number[] = [];
      for (let chunk = 0; chunk * 192 < bytes.length; chunk++) {
        const slice = new Uint8Array(192);
        slice.set(bytes.subarray(chunk * 192, chunk * 192 + 192));
        const text = printBuf(slice, format);
        const data = send
          ? `nl_send\t5\t7\t7\t3\t${bytes.length}\t4026531840\t${chunk}\t${text}\n`
          : `cni_out\t5\t7\t7\t${bytes.length}\t${chunk}\t${text}\n`;
        lines.push(...upgrade({ src: 'kernel', raw: printed(data) }));
        // %r text is ambiguous where the data held a backslash, "x" and two hex digits of a byte %r escapes: read
        // as that byte, and the chunk is shorter. Its words are whole: the next chunk stays where it was.
        const chunkBytes = [...bytesFromBpftraceBuf(text, format)];
        read.push(...chunkBytes, ...new Array((8 - (chunkBytes.length % 8)) % 8).fill(0));
      }
      const { events, problems } = assemble(lines);
      expect(problems).toEqual([]);
      expect(events).toHaveLength(1);
      const event = events[0];
      if (event?.kind !== 'nl_send' && event?.kind !== 'cni_out') throw new Error('no buffer');
      expect([...event.bytes]).toEqual(read.slice(0, bytes.length));
      if (format === 'rx') expect([...event.bytes]).toEqual([...bytes]);
    }
  });

  it('reads the bytes 0-255 back from %r and %rx as bpftrace 0.17 printed them (buf-formats.ndjson)', () => {
    const formats = readFileSync(
      new URL('../fixtures/rtnetlink/buf-formats.ndjson', import.meta.url),
      'utf8',
    )
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => (JSON.parse(line) as { data: string }).data.replace(/\n$/, ''));
    for (const format of ['r', 'rx'] as const) {
      const halves = formats
        .filter((line) => line.startsWith(`bufformat format=${format} `))
        .map((line) => line.slice(line.indexOf(' bytes=') + 7));
      expect(halves.flatMap((half) => [...bytesFromBpftraceBuf(half, format)])).toEqual(
        Array.from({ length: 256 }, (_, i) => i),
      );
    }
  });

  it('leaves a recording of this version as it is', () => {
    const line = { src: 'kernel', raw: printed('nl_send\t5\t7\t7\t3\t4\t1\t0\t\\x01\n') };
    expect(upgrader({ ...header, version: 2 })(line)).toEqual([line]);
  });
});
