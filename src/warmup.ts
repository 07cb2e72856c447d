// JIT warm-up: a real recording through throwaway pipelines while bpftrace attaches, so that the first pods the
// daemon sees are decoded by optimised code.
//
// Measured on the lab (bench/README.md): a freshly started daemon spent most of its CPU per pod in V8's
// interpreter and compilers, not in decoding, and it spends that CPU while the pods it watches start. bpftrace
// takes seconds to attach, during which podwire's own thread has nothing to do: the warm-up runs then, in slices
// that leave the event loop free for bpftrace's lines, and its records go nowhere.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import type { RecordingHeader } from './recording/format.js';
import { pipelineFor, replayLine } from './recording/replay.js';
import { recordText } from './sinks/ndjson.js';

/** The recording the build puts beside this module (test/fixtures/recordings/ten-pods-envs.ndjson). */
export const warmupRecording = new URL('./warmup.ndjson.gz', import.meta.url);

export interface WarmupResult {
  /** Lines pushed through pipelines, over every pass. */
  lines: number;
  records: number;
  ms: number;
  /** Why there was no warm-up (no recording beside podwire, unreadable): tracing is the same, only slower at first. */
  skipped?: string;
}

/** The recording's header and its lines, parsed once: the passes only push them. */
function load(file: URL | string): { header: RecordingHeader; lines: Record<string, unknown>[] } {
  const bytes = readFileSync(file);
  const text = (String(file).endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8');
  const parsed = text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  const header = parsed.shift();
  if (header?.kind !== 'podwire-recording') throw new Error(`${file} is not a podwire recording`);
  return { header: header as unknown as RecordingHeader, lines: parsed };
}

/**
 * Replays the recording `passes` times, each through a pipeline of its own (same ids every time, so never one
 * pipeline twice), `linesPerSlice` lines at a time with the event loop free in between.
 */
export async function warmUp(
  passes = 8,
  file: URL | string = warmupRecording,
  linesPerSlice = 500,
): Promise<WarmupResult> {
  const started = performance.now();
  let recording: ReturnType<typeof load>;
  try {
    recording = load(file);
  } catch (error) {
    return { lines: 0, records: 0, ms: 0, skipped: (error as Error).message };
  }
  let lines = 0;
  let records = 0;
  for (let pass = 0; pass < passes; pass++) {
    const pipeline = pipelineFor(recording.header);
    for (const line of recording.lines) {
      const out = replayLine(pipeline, line);
      for (const record of out?.records ?? []) {
        recordText(record);
        records++;
      }
      if (++lines % linesPerSlice === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    for (const record of pipeline.finish().records) {
      recordText(record);
      records++;
    }
  }
  return { lines, records, ms: performance.now() - started };
}
