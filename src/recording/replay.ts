// `podwire replay`: a recording through the same pipeline as the live run, so it gives the same records.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { Pipeline, type PipelineOutput } from '../correlate/pipeline.js';
import type { HandshakeRecord } from '../correlate/record.js';
import { type StatusEvent, status } from '../events.js';
import type { Sink } from '../sinks/ndjson.js';
import type { RecordingHeader } from './format.js';

/** A recording's line after its header, as the live run saw it: null when it is not one podwire writes. */
export function replayLine(
  pipeline: Pipeline,
  parsed: Record<string, unknown>,
): PipelineOutput | null {
  if (parsed.drain === true) return pipeline.drain();
  if (typeof parsed.cri === 'boolean') {
    pipeline.setCriProbes(parsed.cri);
    return noOutput;
  }
  if (typeof parsed.src !== 'string') return null;
  if (parsed.probe === 'up' || parsed.probe === 'down' || parsed.probe === 'gone')
    return pipeline.probeState(
      parsed.src,
      parsed.probe,
      parsed.ticks === true || parsed.ticks === 'batches' ? parsed.ticks : false,
    );
  if (typeof parsed.raw !== 'string') return null;
  return pipeline.push(parsed.src, parsed.raw);
}

const noOutput: PipelineOutput = Object.freeze({ records: [], problems: [] }) as PipelineOutput;

/** The Pipeline a recording's header line asks for (`maxHeldEvents`: the pipeline's default unless given). */
export function pipelineFor(header: RecordingHeader, maxHeldEvents?: number): Pipeline {
  return new Pipeline(
    {
      clockOffsetNs: BigInt(header.clockOffsetNs),
      criProbes: header.criProbes,
      runtime: header.runtime,
    },
    maxHeldEvents,
  );
}

export async function replayFile(file: string, sinks: Sink[]): Promise<void> {
  const emit = (record: HandshakeRecord | StatusEvent) => {
    for (const sink of sinks) sink.write(record);
  };
  const lines = createInterface({
    input: createReadStream(file),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  let pipeline: Pipeline | null = null;
  let lineNumber = 0;
  for await (const text of lines) {
    lineNumber++;
    if (text.trim() === '') continue;
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(text);
    } catch {
      emit(status('input-problem', `${file}:${lineNumber}: not JSON; skipped`));
      continue;
    }
    if (!pipeline) {
      if (parsed.kind !== 'podwire-recording') {
        throw new Error(
          `${file} is not a podwire recording (its first line has no "kind":"podwire-recording"): record one with podwire trace --record FILE`,
        );
      }
      pipeline = pipelineFor(parsed as unknown as RecordingHeader);
      continue;
    }
    const out = replayLine(pipeline, parsed);
    if (out === null) {
      emit(status('input-problem', `${file}:${lineNumber}: no src/raw; skipped`));
      continue;
    }
    if (out.records.length === 0) continue;
    for (const record of out.records) emit(record);
    // Nothing is lost in a replay: a sink that is behind (a collector) is waited for.
    for (const sink of sinks) {
      const behind = sink.backlog?.();
      if (behind) await behind;
    }
  }
  if (!pipeline) throw new Error(`${file} is empty: record one with podwire trace --record FILE`);
  for (const record of pipeline.finish().records) emit(record);
  for (const sink of sinks) await sink.close();
}
