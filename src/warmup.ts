// JIT warm-up: a real recording through throwaway pipelines while bpftrace attaches, so that the first pods the
// daemon sees are decoded by optimised code rather than by V8's interpreter, with CPU the starting pods need.
// bpftrace takes seconds to attach; the warm-up runs then, in slices that leave the event loop free, and its records
// go nowhere.
import { readRecordingFile } from './recording/reader.js';
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
  let recording: ReturnType<typeof readRecordingFile>;
  try {
    recording = readRecordingFile(file);
  } catch (error) {
    return { lines: 0, records: 0, ms: 0, skipped: (error as Error).message };
  }
  let lines = 0;
  let records = 0;
  for (let pass = 0; pass < passes; pass++) {
    const pipeline = pipelineFor(recording.header);
    for (const line of recording.lines) {
      const out = replayLine(pipeline, line);
      for (const record of out.records) {
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
