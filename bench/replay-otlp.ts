// Replay throughput with OTLP export on vs off, interleaved (ABBA) in one run. Target: on ≥ 80% of off.
// `podwire replay` of the 10,000-pod recording as a user runs it, with and without `--otlp` to a loopback collector.
//
// The collector here takes each request and answers 200 without decoding it (its CPU is not podwire's); that
// nothing was lost is read from podwire itself: a replay waits for a slow collector, and says so if it drops.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { median } from './median.js';
import { projectRoot } from './podwire-trace.js';

const pairs = Number(process.env.PAIRS ?? 3);
const protocol = process.env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf';
const target = 0.8;
const root = projectRoot();
/** The real recording replay-throughput repeats 1,000 times (today's format by default); FIXTURE names another. */
const fixtureName = process.env.FIXTURE ?? 'ten-pods-envs.ndjson';
const recording = join(
  root,
  `.cache/bench/replay-${fixtureName.replace(/\.ndjson$/, '')}-1000x-overlap0.1.ndjson`,
);

interface Collector {
  url: string;
  requests: number;
  bytes: number;
  close(): Promise<void>;
}

async function startCollector(): Promise<Collector> {
  const collector = { url: '', requests: 0, bytes: 0, close: async () => {} };
  const server = createServer((request, response) => {
    request.on('data', (chunk: Buffer) => {
      collector.bytes += chunk.length;
    });
    request.on('end', () => {
      collector.requests++;
      response.writeHead(200, { 'content-type': request.headers['content-type'] ?? '' });
      response.end(request.headers['content-type']?.includes('json') ? '{}' : '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  collector.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  collector.close = () => new Promise((resolve) => server.close(() => resolve()));
  return collector;
}

interface Run {
  otlp: boolean;
  seconds: number;
  records: number;
  dropStatuses: number;
  maxRssMb: number;
}

/** One `podwire replay FILE --json` (NDJSON into a file), timed from spawn to exit. */
async function replayOnce(collector: Collector | null): Promise<Run> {
  const out = join(root, '.cache/bench/replay-otlp.out.ndjson');
  const fd = openSync(out, 'w');
  // GNU time (Debian's `time`) gives the replay's peak RSS when it is there.
  const timed = existsSync('/usr/bin/time') ? ['/usr/bin/time', '-f', '%M'] : [];
  const args = [
    ...timed,
    process.execPath,
    join(root, 'dist/src/cli.js'),
    'replay',
    recording,
    '--json',
    ...(collector ? ['--otlp', collector.url] : []),
  ];
  const started = performance.now();
  const child = spawn(args[0] as string, args.slice(1), {
    stdio: ['ignore', fd, 'pipe'],
    env: { ...process.env, OTEL_EXPORTER_OTLP_PROTOCOL: protocol },
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const seconds = (performance.now() - started) / 1000;
  closeSync(fd);
  if (code !== 0) throw new Error(`podwire replay exited ${code}: ${stderr.trim()}`);
  const text = readFileSync(out, 'utf8');
  return {
    otlp: collector !== null,
    seconds,
    records: (text.match(/"kind":"(handshake|teardown)"/g) ?? []).length,
    dropStatuses: (text.match(/"state":"export-failed"/g) ?? []).length,
    maxRssMb: timed.length > 0 ? Number(stderr.trim().split('\n').at(-1)) / 1024 : Number.NaN,
  };
}

async function main(): Promise<void> {
  if (!existsSync(join(root, 'dist/src/cli.js'))) throw new Error('run npm run build first');
  if (!existsSync(recording)) {
    // The recording replay-throughput synthesises (and checks): made once, cached in .cache/bench.
    const made = spawnSync(process.execPath, [join(root, 'dist/bench/replay-throughput.js')], {
      env: { ...process.env, SYNTHESISE_ONLY: '1', FIXTURE: fixtureName, COPIES: '1000' },
      stdio: 'inherit',
    });
    if (made.status !== 0) throw new Error('could not synthesise the recording');
  }
  const events = Number(
    (spawnSync('grep', ['-c', '"raw"', recording], { encoding: 'utf8' }).stdout as string).trim(),
  );
  const collector = await startCollector();
  console.log(
    `replay-otlp: podwire replay of ${recording} (${events} probe lines), ${pairs} pairs without/with --otlp ${collector.url} (${protocol}), order alternating`,
  );
  console.log(
    `machine: ${cpus().length} CPUs, kernel ${release()}, node ${process.version}, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  console.log(
    'pair  without_s  with_s  ratio  records  otlp_requests  otlp_MB  drops  maxRSS_MB(with)',
  );
  const ratios: number[] = [];
  const withouts: number[] = [];
  const withs: number[] = [];
  for (let pair = 1; pair <= pairs; pair++) {
    const requestsBefore = collector.requests;
    const bytesBefore = collector.bytes;
    const order = pair % 2 === 1 ? [null, collector] : [collector, null];
    const runs: Run[] = [];
    for (const target of order) runs.push(await replayOnce(target));
    const off = runs.find((r) => !r.otlp) as Run;
    const on = runs.find((r) => r.otlp) as Run;
    if (off.records !== on.records)
      throw new Error(`${off.records} records without, ${on.records} with`);
    const ratio = off.seconds / on.seconds;
    ratios.push(ratio);
    withouts.push(off.seconds);
    withs.push(on.seconds);
    console.log(
      [
        pair,
        off.seconds.toFixed(2),
        on.seconds.toFixed(2),
        ratio.toFixed(3),
        on.records,
        collector.requests - requestsBefore,
        ((collector.bytes - bytesBefore) / 1e6).toFixed(1),
        on.dropStatuses,
        on.maxRssMb.toFixed(0),
      ].join('  '),
    );
  }
  await collector.close();
  const ratio = median(withouts) / median(withs);
  console.log(
    `median: without ${median(withouts).toFixed(2)} s (${Math.round(events / median(withouts))} lines/s), with ${median(withs).toFixed(2)} s (${Math.round(events / median(withs))} lines/s); throughput with OTLP = ${(ratio * 100).toFixed(1)}% of without (median of pair ratios ${(median(ratios) * 100).toFixed(1)}%; target >= ${target * 100}%: ${ratio >= target ? 'met' : 'MISSED'})`,
  );
}

main().catch((error: unknown) => {
  console.error(`replay-otlp: ${error instanceof Error ? error.message : error}`);
  process.exitCode = 1;
});
