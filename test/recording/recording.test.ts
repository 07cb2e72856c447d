// The recording module: what trace --record writes, replay and the warm-up read back, and one-line errors for the rest.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type RecordedLine, recordingVersion } from '../../src/recording/format.js';
import { openRecording, parseRecording, readRecordingFile } from '../../src/recording/reader.js';
import { RecordingWriter } from '../../src/recording/writer.js';

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
    for await (const line of streamed.lines) seen.push(line);
    expect(seen).toEqual(lines.map((line) => ({ line })));
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
    const { lines } = await openRecording(file);
    const seen: unknown[] = [];
    for await (const line of lines) seen.push(line);
    expect(seen).toEqual([
      { problem: `${file}:2: not JSON; skipped` },
      { problem: `${file}:3: not a line podwire records; skipped` },
      { line: { drain: true } },
    ]);
  });

  it('reads a version 1 recording (every fixture is one), its lines in the current format', () => {
    const text = readFileSync(fixture('ten-pods-envs.ndjson'), 'utf8');
    const recording = parseRecording(text, 'ten-pods-envs.ndjson');
    expect(recording.header.version).toBe(1);
    expect(recording.lines.length).toBeGreaterThan(1000);
  });
});
