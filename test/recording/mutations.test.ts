// Damaged recordings: 10,000 windows of the real fixtures, mutated as a crash, a bad disk or a careless edit would
// (lines cut, bits flipped, lines dropped, repeated, moved), replayed. Each replay must end without a throw, in
// bounded time, holding nothing afterwards, and with every line it could not use counted: by the reader (a line
// that is not a recorded line) or by the pipeline (a bpftrace line that is not one).
//
// A failure prints its case's seed: `MUTATION_SEED=<seed> MUTATION_CASES=1 npx vitest run --project unit
// test/recording/mutations.test.ts` replays that case alone.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRecording } from '../../src/recording/reader.js';
import { pipelineFor, replayFile, replayLine } from '../../src/recording/replay.js';
import { prng } from '../prng.js';

const cases = Number(process.env.MUTATION_CASES ?? 10_000);
const firstSeed = Number(process.env.MUTATION_SEED ?? 19_0007);
/** Every this many cases, the replay goes through a file and replayFile too, and must count the same. */
const throughFileEvery = 100;
/** A replay of a few hundred lines takes milliseconds; one that takes this long is a hang in the making. */
const maxReplayMs = 2_000;

const dir = fileURLToDir('../fixtures/recordings/');
const tmp = mkdtempSync(join(tmpdir(), 'podwire-mutations-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function fileURLToDir(relative: string): string {
  return new URL(relative, import.meta.url).pathname;
}

interface Fixture {
  name: string;
  header: string;
  /** The lines after the header, as bytes, each without its newline. */
  lines: Buffer[];
  /** Every raw bpftrace line the fixture has, and those of them that are not probe lines (the fixture's own). */
  raws: Set<string>;
  badRaws: Set<string>;
}

const fixtures: Fixture[] = readdirSync(dir)
  .filter((name) => name.endsWith('.ndjson'))
  .sort()
  .map((name) => {
    const text = readFileSync(join(dir, name), 'utf8');
    const [header = '', ...lines] = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    const raws = new Set<string>();
    for (const line of lines) {
      const raw = (JSON.parse(line) as { raw?: unknown }).raw;
      if (typeof raw === 'string') raws.add(raw);
    }
    // The fixtures' own bad lines (ten-pods-envs.ndjson has two), found by replaying each alone.
    const badRaws = new Set(
      [...raws].filter((raw) => {
        const pipeline = pipelineFor(parseRecording(header, name).header);
        pipeline.push('kernel', raw);
        return pipeline.counters.malformedLines > 0;
      }),
    );
    return { name, header, lines: lines.map((line) => Buffer.from(line)), raws, badRaws };
  });

type Mutation = 'truncate' | 'flip' | 'drop' | 'duplicate' | 'reorder' | 'cut-end';
const mutations: Mutation[] = ['truncate', 'flip', 'drop', 'duplicate', 'reorder', 'cut-end'];

interface Case {
  seed: number;
  fixture: Fixture;
  /** The file: the fixture's header, then the mutated window. */
  bytes: Buffer;
  applied: string[];
}

/** One case: a window of 20-200 lines of a fixture, with 1-6 mutations. */
function makeCase(seed: number): Case {
  const random = prng(seed);
  const int = (below: number) => Math.floor(random() * below);
  const fixture = fixtures[int(fixtures.length)] as Fixture;
  const length = Math.min(fixture.lines.length, 20 + int(180));
  const start = int(fixture.lines.length - length + 1);
  const lines: Buffer[] = fixture.lines
    .slice(start, start + length)
    .map((line) => Buffer.from(line));
  const applied: string[] = [`${fixture.name} lines ${start + 2}-${start + length + 1}`];
  let cutEnd = false;
  for (let n = 1 + int(6); n > 0 && lines.length > 1; n--) {
    const mutation = mutations[int(mutations.length)] as Mutation;
    const at = int(lines.length);
    const line = lines[at] as Buffer;
    switch (mutation) {
      case 'truncate': {
        const keep = int(line.length);
        lines[at] = line.subarray(0, keep);
        applied.push(`line ${at} cut to ${keep} bytes`);
        break;
      }
      case 'flip': {
        // A bit flipped: may make a newline (one line becomes two), a quote, or bytes that are not UTF-8.
        const byte = int(line.length);
        const bit = int(8);
        const flipped = Buffer.from(line);
        flipped[byte] = (flipped[byte] as number) ^ (1 << bit);
        lines[at] = flipped;
        applied.push(`line ${at} byte ${byte} bit ${bit} flipped`);
        break;
      }
      case 'drop':
        lines.splice(at, 1);
        applied.push(`line ${at} dropped`);
        break;
      case 'duplicate': {
        const to = int(lines.length + 1);
        lines.splice(to, 0, line);
        applied.push(`line ${at} repeated at ${to}`);
        break;
      }
      case 'reorder': {
        const to = int(lines.length);
        lines.splice(at, 1);
        lines.splice(to, 0, line);
        applied.push(`line ${at} moved to ${to}`);
        break;
      }
      case 'cut-end':
        cutEnd = true;
        break;
    }
  }
  let body = Buffer.concat(lines.flatMap((line) => [line, Buffer.from('\n')]));
  if (cutEnd) {
    // The file ends inside its last line, as after a kill -9 during a write.
    const cut = int(Math.min(body.length - 1, (lines.at(-1)?.length ?? 0) + 1)) + 1;
    body = body.subarray(0, body.length - cut);
    applied.push(`file cut ${cut} bytes before its end`);
  }
  return {
    seed,
    fixture,
    bytes: Buffer.concat([Buffer.from(`${fixture.header}\n`), body]),
    applied,
  };
}

/**
 * What a replay of `bytes` must count, from the format alone (src/recording/format.ts, src/decode/lines.ts):
 * the lines the reader must skip, and bounds on the bpftrace lines the pipeline must find unreadable.
 */
function mustCount(c: Case): {
  skipped: number;
  malformedAtLeast: number;
  malformedAtMost: number;
} {
  const [, ...lines] = c.bytes.toString('utf8').split('\n');
  let skipped = 0;
  let malformedAtLeast = 0;
  let malformedAtMost = 0;
  for (const text of lines) {
    if (text.trim() === '') continue;
    let line: unknown;
    try {
      line = JSON.parse(text);
    } catch {
      skipped++;
      continue;
    }
    const { src, raw, probe, drain, cri } = (line ?? {}) as Record<string, unknown>;
    const shaped =
      typeof line === 'object' &&
      line !== null &&
      (drain === true ||
        typeof cri === 'boolean' ||
        (typeof src === 'string' &&
          (probe === 'up' || probe === 'down' || probe === 'gone' || typeof raw === 'string')));
    if (!shaped) {
      skipped++;
      continue;
    }
    const pushed =
      drain !== true &&
      typeof cri !== 'boolean' &&
      probe !== 'up' &&
      probe !== 'down' &&
      probe !== 'gone' &&
      typeof raw === 'string';
    if (!pushed) continue;
    // Blank text and bpftrace's "Lost N events" are not probe lines, and not unreadable either.
    const notJson =
      raw.trim() !== '' && !(raw[0] !== '{' && /Lost (\d+) events/.test(raw)) && !isJson(raw);
    if (notJson) malformedAtLeast++;

    if (!c.fixture.raws.has(raw) || c.fixture.badRaws.has(raw)) malformedAtMost++;
  }
  return { skipped, malformedAtLeast, malformedAtMost };
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** The case replayed in memory, as replay does it: what it counted, how long it took, and what it holds after. */
function replayed(c: Case) {
  const started = performance.now();
  const recording = parseRecording(c.bytes.toString('utf8'), `case-${c.seed}.ndjson`);
  const pipeline = pipelineFor(recording.header);
  let records = 0;
  for (const line of recording.lines) records += replayLine(pipeline, line).records.length;
  records += pipeline.finish().records.length;
  return {
    skipped: recording.problems.length,
    counters: { ...pipeline.counters },
    records,
    ms: performance.now() - started,
    holds: pipeline.holds(),
  };
}

const gc = (() => {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

describe('replaying damaged recordings', () => {
  it(`counts every line it cannot use in ${cases} mutated windows of the fixtures, and neither throws, hangs nor keeps state`, async () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(8);
    const totals = { skipped: 0, malformed: 0, assemblyProblems: 0, records: 0, late: 0 };
    let slowest = 0;
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    for (let i = 0; i < cases; i++) {
      const c = makeCase(firstSeed + i);
      const why = () =>
        `case seed ${c.seed} (MUTATION_SEED=${c.seed} MUTATION_CASES=1): ${c.applied.join('; ')}`;
      let got: ReturnType<typeof replayed>;
      try {
        got = replayed(c);
      } catch (error) {
        throw new Error(`${why()}: replay threw ${(error as Error).stack}`);
      }
      const want = mustCount(c);
      expect(got.skipped, `${why()}: lines skipped by the reader`).toBe(want.skipped);
      // A line that is not JSON is unreadable (malformed) or, read in place, has a field that cannot be read (an
      // assembly problem): either way counted.
      expect(
        got.counters.malformedLines + got.counters.assemblyProblems,
        `${why()}: unreadable bpftrace lines counted`,
      ).toBeGreaterThanOrEqual(want.malformedAtLeast);
      expect(
        got.counters.malformedLines,
        `${why()}: unreadable bpftrace lines counted (at most the changed ones)`,
      ).toBeLessThanOrEqual(want.malformedAtMost);
      expect(got.ms, `${why()}: replay time`).toBeLessThan(maxReplayMs);
      expect(got.holds, `${why()}: what the pipeline holds after finish()`).toEqual({
        events: 0,
        partialValues: 0,
        inFlight: 0,
      });
      if (i % throughFileEvery === 0) {
        // The same case through the file reader (chunked, a cut last line) and replayFile: the same counts.
        const file = join(tmp, `case-${c.seed}.ndjson`);
        writeFileSync(file, c.bytes);
        let statuses = 0;
        const summary = await replayFile(file, [
          {
            write: (record) => {
              if (record.kind === 'status') statuses++;
            },
            close: async () => {},
          },
        ]);
        expect(summary.skippedLines, `${why()}: replayFile's skipped lines`).toBe(got.skipped);
        expect(statuses, `${why()}: one status line per skipped line`).toBe(got.skipped);
        expect(summary.pipeline.counters, `${why()}: replayFile's counters`).toEqual(got.counters);
        rmSync(file);
      }
      slowest = Math.max(slowest, got.ms);
      totals.skipped += got.skipped;
      totals.malformed += got.counters.malformedLines;
      totals.assemblyProblems += got.counters.assemblyProblems;
      totals.late += got.counters.lateEvents;
      totals.records += got.records;
    }
    gc();
    const heapGrowthMb = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    console.log(
      `${cases} mutated replays (seeds ${firstSeed}-${firstSeed + cases - 1}): ${totals.skipped} lines skipped, ${totals.malformed} unreadable bpftrace lines, ${totals.assemblyProblems} assembly problems, ${totals.late} late events, ${totals.records} records; slowest replay ${slowest.toFixed(0)} ms; heap growth ${heapGrowthMb.toFixed(1)} MB`,
    );
    // Nothing a replay leaves behind may pile up across them (module-level caches, slabs held by records).
    expect(heapGrowthMb).toBeLessThan(32);
    // The mutations did make damage to count: a test that found none would prove nothing.
    if (cases >= 1000) {
      expect(totals.skipped).toBeGreaterThan(cases / 4);
      expect(totals.malformed + totals.assemblyProblems).toBeGreaterThan(cases / 20);
    }
  }, 180_000);
});
