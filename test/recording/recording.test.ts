// The recording module: what trace --record writes, replay and the warm-up read back, and one-line errors for the rest.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { type RecordedLine, recordingVersion } from '../../src/recording/format.js';
import {
  LineProblem,
  openRecording,
  parseRecording,
  readRecordingFile,
} from '../../src/recording/reader.js';
import { replayFile } from '../../src/recording/replay.js';
import { RecordingWriter } from '../../src/recording/writer.js';
import { recordText } from '../../src/sinks/ndjson.js';

const dir = mkdtempSync(join(tmpdir(), 'podwire-recording-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const fixture = (name: string) =>
  new URL(`../fixtures/recordings/${name}`, import.meta.url).pathname;

describe('a recording written and read back', () => {
  it('has a header of the current version and every line as it was written', async () => {
    const file = join(dir, 'written.ndjson');
    const lines: RecordedLine[] = [
      { src: 'kernel', probe: 'down' },
      { src: 'kernel', probe: 'up', ticks: 'batches' },
      { src: 'kernel', raw: '{"type": "printf", "data": "tick\\t1\\t2\\t3\\n"}' },
      { cri: true },
      { drain: true },
    ];
    const problems: string[] = [];
    const writer = new RecordingWriter(
      file,
      {
        clockOffsetNs: '42',
        criProbes: false,
        runtime: 'containerd',
        cniBinDirs: ['/usr/lib/cni'],
      },
      (message) => problems.push(message),
    );
    for (const line of lines) writer.write(line);
    await writer.end();
    const read = readRecordingFile(file);
    expect(read.header).toMatchObject({
      kind: 'podwire-recording',
      version: recordingVersion,
      clockOffsetNs: '42',
      cniBinDirs: ['/usr/lib/cni'],
    });
    expect(read.lines).toEqual(lines);
    const streamed = await openRecording(file);
    const seen: unknown[] = [];
    for await (const batch of streamed.batches) seen.push(...batch);
    expect(seen).toEqual(lines);
    expect(problems).toEqual([]);
  });

  it('stops the recording with one line when the disk is full, and the writer goes on quietly', async () => {
    const problems: string[] = [];
    const writer = new RecordingWriter(
      '/dev/full',
      { clockOffsetNs: '0', criProbes: false, runtime: null, cniBinDirs: [] },
      (message) => problems.push(message),
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    writer.write({ drain: true });
    await writer.end();
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^the recording \/dev\/full stopped: .*ENOSPC.*record elsewhere\)$/,
    );
  });
});

describe('reading what is not a recording of this podwire', () => {
  const cases: [string, string, RegExp][] = [
    ['empty', '', /empty\.ndjson is empty: record one with podwire trace --record FILE$/],
    ['not-json', 'hello\n', /is not a podwire recording \(its first line is not JSON\)/],
    ['other', '{"kind":"handshake"}\n', /has no "kind":"podwire-recording"/],
    [
      'future',
      `{"kind":"podwire-recording","version":${recordingVersion + 1}}\n`,
      new RegExp(
        `format version ${recordingVersion + 1}; this podwire reads versions 1 to ${recordingVersion}`,
      ),
    ],
  ];
  for (const [name, text, error] of cases) {
    it(`says so in one line (${name})`, async () => {
      const file = join(dir, `${name}.ndjson`);
      writeFileSync(file, text);
      expect(() => readRecordingFile(file)).toThrow(error);
      await expect(openRecording(file)).rejects.toThrow(error);
    });
  }

  it('skips a line that is not JSON or not one podwire writes, saying where, and reads on', async () => {
    const file = join(dir, 'damaged.ndjson');
    const header = readFileSync(fixture('ten-pods-envs.ndjson'), 'utf8').split('\n')[0];
    writeFileSync(file, `${header}\n{"src":"kernel",\n{"what":1}\n{"drain":true}\n`);
    const { batches } = await openRecording(file);
    const seen: unknown[] = [];
    for await (const batch of batches) seen.push(...batch);
    expect(seen).toEqual([
      new LineProblem(`${file}:2: not JSON; skipped`),
      new LineProblem(`${file}:3: not a line podwire records; skipped`),
      { drain: true },
    ]);
  });

  it('reads a version 1 recording (every fixture is one), its lines in the current format', () => {
    const text = readFileSync(fixture('ten-pods-envs.ndjson'), 'utf8');
    const recording = parseRecording(text, 'ten-pods-envs.ndjson');
    expect(recording.header.version).toBe(1);
    expect(recording.lines.length).toBeGreaterThan(1000);
  });
});

describe('a recording cut short (podwire killed while it wrote)', () => {
  const name = 'ten-pods-envs.ndjson';
  const whole = readFileSync(fixture(name), 'utf8');
  // Cut 40 characters into the line that starts after 60% of the file: a raw bpftrace line, cut in its JSON.
  const lineStart = whole.indexOf('\n', Math.floor(whole.length * 0.6)) + 1;
  const cut = whole.slice(0, lineStart + 40);
  const upToLastWholeLine = whole.slice(0, lineStart);
  const cutLine = cut.split('\n').length;

  /** What `podwire replay FILE --json` prints, and what the replay counted as skipped. */
  async function replayed(file: string) {
    const printed: string[] = [];
    const summary = await replayFile(file, [
      { write: (record) => printed.push(recordText(record)), close: async () => {} },
    ]);
    return { printed, skipped: summary.skippedLines };
  }

  it('replays up to its last whole line, and says in one line that the last is cut', async () => {
    const cutFile = join(dir, 'cut.ndjson');
    const wholeLinesFile = join(dir, 'whole-lines.ndjson');
    writeFileSync(cutFile, cut);
    writeFileSync(wholeLinesFile, upToLastWholeLine);
    const fromCut = await replayed(cutFile);
    const fromWholeLines = await replayed(wholeLinesFile);
    expect(fromWholeLines.skipped).toBe(0);
    expect(fromCut.skipped).toBe(1);
    const problem = JSON.stringify({
      kind: 'status',
      status: 'input-problem',
      message: `${cutFile}:${cutLine}: the last line is cut (the recording stopped while writing it: podwire killed?); skipped, every line before it read`,
    });
    const statusLines = fromCut.printed.filter((line) => line.includes('"kind":"status"'));
    expect(statusLines.map((line) => JSON.parse(line).message)).toEqual([
      JSON.parse(problem).message,
    ]);
    // Every record of the lines before the cut, the same as the file that ends with its last whole line gives.
    expect(fromCut.printed.filter((line) => !line.includes('"kind":"status"'))).toEqual(
      fromWholeLines.printed,
    );
    expect(fromWholeLines.printed.length).toBeGreaterThan(5);

    const read = readRecordingFile(cutFile);
    expect(read.problems).toEqual([JSON.parse(problem).message]);
    expect(read.lines).toEqual(readRecordingFile(wholeLinesFile).lines);
  });

  it('replays a gzipped recording whose compressed stream is cut, up to what it holds', async () => {
    const gzFile = join(dir, 'cut.ndjson.gz');
    const compressed = gzipSync(whole);
    // The gzip stream cut at 60%: no gzip trailer, and its last line cut somewhere.
    writeFileSync(gzFile, compressed.subarray(0, Math.floor(compressed.length * 0.6)));
    const read = readRecordingFile(gzFile);
    expect(read.problems).toHaveLength(1);
    expect(read.problems[0]).toMatch(
      /:\d+: the last line is cut .*; skipped, every line before it read$/,
    );
    const wholeRead = readRecordingFile(fixture(name));
    expect(read.lines.length).toBeGreaterThan(wholeRead.lines.length / 3);
    expect(read.lines).toEqual(wholeRead.lines.slice(0, read.lines.length));
    const streamed = await replayed(gzFile);
    expect(streamed.skipped).toBe(1);
    expect(
      streamed.printed.filter((line) => line.includes('"kind":"handshake"')).length,
    ).toBeGreaterThan(0);
  });

  it('keeps every line written before a kill -9, however busy the process was after', async () => {
    const file = join(dir, 'killed.ndjson');
    const writer = new URL('../../dist/src/recording/writer.js', import.meta.url).pathname;
    const source = readRecordingFile(fixture(name));
    // The child writes the fixture's lines as the live run does, then never returns to its event loop (a busy
    // node): what it wrote must be in the file when it is killed.
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { RecordingWriter } from ${JSON.stringify(writer)};
         import { readFileSync } from 'node:fs';
         const lines = JSON.parse(readFileSync(0, 'utf8'));
         const w = new RecordingWriter(${JSON.stringify(file)}, { clockOffsetNs: '1', criProbes: true, runtime: 'containerd', cniBinDirs: [] }, (m) => console.error(m));
         for (const line of lines) w.write(line);
         setTimeout(() => { process.stdout.write('written\\n'); for (;;); }, 0);`,
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    child.stdin.end(JSON.stringify(source.lines));
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    const read = readRecordingFile(file);
    expect(read.problems).toEqual([]);
    expect(read.lines).toEqual(source.lines);
  });
});
