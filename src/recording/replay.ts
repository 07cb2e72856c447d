// `podwire replay`: a recording through the same pipeline as the live run, so it gives the same records.
import { noOutput, Pipeline, type PipelineOutput } from '../correlate/pipeline.js';
import type { HandshakeRecord } from '../correlate/record.js';
import { type StatusEvent, status } from '../events.js';
import type { Sink } from '../sinks/ndjson.js';
import type { RecordedLine, RecordingHeader } from './format.js';
import { LineProblem, openRecording } from './reader.js';

/** A recording's line after its header, through the pipeline as the live run put it there. */
export function replayLine(pipeline: Pipeline, line: RecordedLine): PipelineOutput {
  if ('drain' in line) return pipeline.drain();
  if ('cri' in line) {
    pipeline.setCriProbes(line.cri);
    return noOutput;
  }
  if ('probedPlugins' in line) {
    pipeline.setProbedPlugins(line.probedPlugins);
    return noOutput;
  }
  if ('probe' in line) return pipeline.probeState(line.src, line.probe, line.ticks ?? false);
  return pipeline.push(line.src, line.raw);
}

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

/** What a replay read: the recording's lines it skipped, and the pipeline it went through (its counters). */
export interface ReplaySummary {
  skippedLines: number;
  pipeline: Pipeline;
}

export async function replayFile(file: string, sinks: Sink[]): Promise<ReplaySummary> {
  const emit = (record: HandshakeRecord | StatusEvent) => {
    for (const sink of sinks) sink.write(record);
  };
  const recording = await openRecording(file);
  const pipeline = pipelineFor(recording.header);
  let skippedLines = 0;
  for await (const batch of recording.batches) {
    for (const read of batch) {
      if (read instanceof LineProblem) {
        skippedLines++;
        emit(status('input-problem', read.problem));
        continue;
      }
      const out = replayLine(pipeline, read);
      if (out.records.length === 0) continue;
      for (const record of out.records) emit(record);
      // Nothing is lost in a replay: a sink that is behind (a collector) is waited for.
      for (const sink of sinks) {
        const behind = sink.backlog?.();
        if (behind) await behind;
      }
    }
  }
  for (const record of pipeline.finish().records) emit(record);
  for (const sink of sinks) await sink.close();
  return { skippedLines, pipeline };
}
