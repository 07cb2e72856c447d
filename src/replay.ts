// `podwire replay`: a recording through the same pipeline as the live run, so it gives the same records.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { HandshakeRecord } from './correlate/record.js';
import { type StatusEvent, status } from './events.js';
import { Pipeline } from './pipeline.js';
import type { Sink } from './sinks/ndjson.js';
import type { RecordingHeader } from './trace.js';

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
    let parsed: { kind?: string; src?: unknown; raw?: unknown };
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
      const header = parsed as unknown as RecordingHeader;
      pipeline = new Pipeline({
        clockOffsetNs: BigInt(header.clockOffsetNs),
        criProbes: header.criProbes,
        runtime: header.runtime,
      });
      continue;
    }
    const meta = parsed as { probe?: unknown; cri?: unknown; drain?: unknown };
    if (meta.drain === true) {
      for (const record of pipeline.drain().records) emit(record);
      continue;
    }
    if (typeof meta.cri === 'boolean') {
      pipeline.setCriProbes(meta.cri);
      continue;
    }
    if (typeof parsed.src === 'string' && (meta.probe === 'up' || meta.probe === 'down')) {
      for (const record of pipeline.probeState(parsed.src, meta.probe === 'up').records)
        emit(record);
      continue;
    }
    if (typeof parsed.src !== 'string' || typeof parsed.raw !== 'string') {
      emit(status('input-problem', `${file}:${lineNumber}: no src/raw; skipped`));
      continue;
    }
    const out = pipeline.push(parsed.src, parsed.raw);
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
