// Replay against its floor: `replayFile` of a recording in today's format vs only splitting it into lines and
// JSON.parse-ing each line and its embedded bpftrace line, interleaved, each run a process of its own.
//
// Three measures a round, the order rotating: the floor (the lines split as podwire's reader splits them: the
// fastest way found), the floor with the lines split by node's readline (what the issue measured, ~290k lines/s),
// and the replay. The target (issue 19 item 9) is the replay within 3x of the floor; the ratio to the readline floor
// is printed to compare with the figures. Each replay must give the same records, all ok, and no status line.
//
// The recording is the one replay-throughput synthesises (COPIES of FIXTURE, made there on first use), with its
// header saying today's format version: replay-throughput keeps the fixture's header (version 1) although its lines
// are in today's format, and a version-1 header would make replay run the upgrade's check on every line.
import { spawnSync } from 'node:child_process';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  renameSync,
  statSync,
} from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { HandshakeRecord } from '../src/correlate/record.js';
import type { StatusEvent } from '../src/events.js';
import { recordingVersion } from '../src/recording/format.js';
import { linesOfFile } from '../src/recording/reader.js';
import { replayFile } from '../src/recording/replay.js';
import { median } from './median.js';
import { projectRoot } from './podwire-trace.js';

const copies = Number(process.env.COPIES ?? 1000);
const runs = Math.max(1, Number(process.env.RUNS ?? 5));
const fixtureName = process.env.FIXTURE ?? 'ten-pods-envs.ndjson';
const profile = process.env.PROFILE === '1';
const targetRatio = 3;

const root = projectRoot();
const cacheDir = join(root, '.cache/bench');
/** The file replay-throughput makes (its default OVERLAP). */
const synthetic = join(
  cacheDir,
  `replay-${fixtureName.replace(/\.ndjson$/, '')}-${copies}x-overlap0.1.ndjson`,
);
const todays = synthetic.replace(/\.ndjson$/, `-v${recordingVersion}.ndjson`);

interface RunResult {
  lines: number;
  seconds: number;
  /** User + system CPU seconds of the run: on a loaded machine, less disturbed than the wall time. */
  cpuSeconds?: number;
  records: number;
  statuses: number;
}

/**
 * The floor: the file split into lines as podwire's reader splits it (the fastest way found: see
 * src/recording/reader.ts), each line JSON.parse'd, and its `raw` bpftrace line JSON.parse'd too.
 */
async function floor(file: string): Promise<RunResult> {
  const started = performance.now();
  let lines = 0;
  let parsed = 0;
  const line = (text: string) => {
    lines++;
    if (text === '') return;
    const wrapper = JSON.parse(text) as { raw?: unknown };
    if (typeof wrapper.raw !== 'string') return;
    try {
      JSON.parse(wrapper.raw);
      parsed++;
    } catch {
      // A bpftrace line that is not JSON (none in this recording): read, nothing to parse.
    }
  };
  for await (const chunk of linesOfFile(file)) {
    for (const text of chunk.lines) line(text);
    if (chunk.cut !== undefined) line(chunk.cut);
  }
  if (parsed === 0) throw new Error(`${file} has no bpftrace lines`);
  return { lines, seconds: (performance.now() - started) / 1000, records: 0, statuses: 0 };
}

/** The floor as the issue measured it (about 290k lines/s): the lines split by node's readline instead. */
async function readlineFloor(file: string): Promise<RunResult> {
  const started = performance.now();
  let lines = 0;
  for await (const text of createInterface({
    input: createReadStream(file),
    crlfDelay: Number.POSITIVE_INFINITY,
  })) {
    lines++;
    const wrapper = JSON.parse(text) as { raw?: unknown };
    if (typeof wrapper.raw === 'string' && wrapper.raw.startsWith('{')) JSON.parse(wrapper.raw);
  }
  return { lines, seconds: (performance.now() - started) / 1000, records: 0, statuses: 0 };
}

/** What `podwire replay FILE` does, into a sink that only counts. */
async function replay(file: string): Promise<RunResult> {
  const result: RunResult = { lines: 0, seconds: 0, records: 0, statuses: 0 };
  const started = performance.now();
  await replayFile(file, [
    {
      write: (record: HandshakeRecord | StatusEvent) => {
        if (record.kind === 'status') result.statuses++;
        else if (record.outcome === 'ok') result.records++;
      },
      close: async () => {},
    },
  ]);
  result.seconds = (performance.now() - started) / 1000;
  return result;
}

/** The synthetic recording with today's version in its header, made once beside it. */
async function todaysFormat(): Promise<void> {
  if (!existsSync(synthetic)) {
    console.log(`making ${synthetic} with replay-throughput (once)`);
    const made = spawnSync(process.execPath, [join(root, 'dist/bench/replay-throughput.js')], {
      stdio: 'inherit',
      env: { ...process.env, SYNTHESISE_ONLY: '1', COPIES: String(copies), OVERLAP: '0.1' },
    });
    if (made.status !== 0) throw new Error('replay-throughput could not make the recording');
  }
  if (existsSync(todays) && statSync(todays).mtimeMs >= statSync(synthetic).mtimeMs) return;
  const out = createWriteStream(`${todays}.partial`);
  let first = true;
  for await (const text of createInterface({
    input: createReadStream(synthetic, { highWaterMark: 1 << 20 }),
    crlfDelay: Number.POSITIVE_INFINITY,
  })) {
    const line = first ? JSON.stringify({ ...JSON.parse(text), version: recordingVersion }) : text;
    first = false;
    if (!out.write(`${line}\n`))
      await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  await new Promise<void>((resolve) => out.end(() => resolve()));
  renameSync(`${todays}.partial`, todays);
}

type Kind = 'floor' | 'readline-floor' | 'replay';
const kinds: Kind[] = ['floor', 'readline-floor', 'replay'];

function runChild(kind: Kind, run: number): RunResult {
  const flags = profile
    ? [
        '--cpu-prof',
        '--cpu-prof-dir',
        join(cacheDir, 'profiles-floor'),
        '--cpu-prof-name',
        `${kind}-${run}.cpuprofile`,
      ]
    : [];
  const child = spawnSync(
    process.execPath,
    [...flags, fileURLToPath(import.meta.url), `--${kind}`, todays],
    { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 1 << 20 },
  );
  const last = child.stdout.trim().split('\n').at(-1) ?? '';
  if (child.status !== 0 || !last.startsWith('{'))
    throw new Error(`${kind} run ${run} failed (exit ${child.status ?? child.signal}): ${last}`);
  return JSON.parse(last) as RunResult;
}

const measures: Record<Kind, (file: string) => Promise<RunResult>> = {
  floor,
  'readline-floor': readlineFloor,
  replay,
};

async function main(): Promise<void> {
  for (const kind of kinds) {
    const at = process.argv.indexOf(`--${kind}`);
    const file = process.argv[at + 1];
    if (at < 0 || !file) continue;
    const cpu = process.cpuUsage();
    const result = await measures[kind](file);
    const used = process.cpuUsage(cpu);
    result.cpuSeconds = (used.user + used.system) / 1e6;
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  mkdirSync(cacheDir, { recursive: true });
  await todaysFormat();
  console.log(
    `replay-floor: ${todays} (${(statSync(todays).size / 1e9).toFixed(2)} GB), ${runs} rounds of the floor, the floor split by readline and the replay, the order rotating, each run a process of its own`,
  );
  console.log(`machine: ${cpus().length} CPUs, kernel ${release()}, node ${process.version}`);
  console.log(
    'round  floor_s  readline_floor_s  replay_s  ratio  ratio_to_readline  cpu_s floor/replay  lines/s floor/replay  load',
  );
  const seconds: Record<Kind, number[]> = { floor: [], 'readline-floor': [], replay: [] };
  const ratios: number[] = [];
  let records = -1;
  for (let round = 1; round <= runs; round++) {
    const load = loadavg()[0]?.toFixed(2) ?? '-';
    const order = kinds.map((_, i) => kinds[(i + round - 1) % kinds.length] as Kind);
    const got = Object.fromEntries(order.map((kind) => [kind, runChild(kind, round)])) as Record<
      Kind,
      RunResult
    >;
    // Every run must give the same records, all ok: a faster replay that gives other records is no replay.
    if (got.replay.statuses !== 0 || (records >= 0 && got.replay.records !== records))
      throw new Error(
        `replay run ${round}: ${got.replay.records} ok records and ${got.replay.statuses} status lines (before: ${records} ok, 0 status lines)`,
      );
    records = got.replay.records;
    for (const kind of kinds) seconds[kind].push(got[kind].seconds);
    ratios.push(got.replay.seconds / got.floor.seconds);
    const lines = got.floor.lines;
    console.log(
      [
        String(round).padEnd(6),
        got.floor.seconds.toFixed(2).padEnd(8),
        got['readline-floor'].seconds.toFixed(2).padEnd(17),
        got.replay.seconds.toFixed(2).padEnd(9),
        (got.replay.seconds / got.floor.seconds).toFixed(2).padEnd(6),
        (got.replay.seconds / got['readline-floor'].seconds).toFixed(2).padEnd(18),
        `${got.floor.cpuSeconds?.toFixed(2)}/${got.replay.cpuSeconds?.toFixed(2)}`.padEnd(19),
        `${Math.round(lines / got.floor.seconds)}/${Math.round(lines / got.replay.seconds)}`.padEnd(
          20,
        ),
        load,
      ].join(' '),
    );
  }
  const floorS = median(seconds.floor);
  const readlineS = median(seconds['readline-floor']);
  const replayS = median(seconds.replay);
  const ratio = replayS / floorS;
  console.log(
    `median: floor ${floorS.toFixed(2)} s, floor split by readline ${readlineS.toFixed(2)} s, replay ${replayS.toFixed(2)} s (${records} ok records, no status line)`,
  );
  console.log(
    `ratio to the floor: ${ratio.toFixed(2)} of medians, ${median(ratios).toFixed(2)} median of rounds (target <= ${targetRatio}: ${ratio <= targetRatio ? 'met' : 'MISSED'}); to the readline floor: ${(replayS / readlineS).toFixed(2)}`,
  );
}

main().catch((error: unknown) => {
  console.error(`replay-floor: ${error instanceof Error ? error.message : error}`);
  process.exitCode = 1;
});
