// Replays a real recording through the same pipeline as `podwire replay`, optionally edited first.
import { readFileSync } from 'node:fs';
import type { TickMode } from '../../src/correlate/pipeline.js';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import type { RecordedLine, RecordingHeader } from '../../src/recording/format.js';
import { parseRecording } from '../../src/recording/reader.js';
import { pipelineFor, replayLine } from '../../src/recording/replay.js';

/** A recorded line with every field optional: tests read and edit lines without narrowing them first. */
export interface RecordingLine {
  src?: string;
  raw?: string;
  probe?: 'up' | 'down' | 'gone';
  ticks?: TickMode;
  cri?: boolean;
  probedPlugins?: string[] | null;
  drain?: boolean;
}

/** A fixture as podwire reads it: its header, and its lines brought to today's format. */
export function readRecording(name: string): { header: RecordingHeader; lines: RecordingLine[] } {
  const text = readFileSync(new URL(`../fixtures/recordings/${name}`, import.meta.url), 'utf8');
  return parseRecording(text, name);
}

/** A line a test made or edited, as the pipeline takes it. */
export const recorded = (line: RecordingLine): RecordedLine => line as RecordedLine;

export function replay(header: RecordingHeader, lines: RecordingLine[]): HandshakeRecord[] {
  const pipeline = pipelineFor(header);
  const records: HandshakeRecord[] = [];
  for (const line of lines) records.push(...replayLine(pipeline, recorded(line)).records);
  records.push(...pipeline.finish().records);
  return records;
}

/** The printf data of a recorded bpftrace line, or null for other lines. */
export function printfData(line: RecordingLine): string | null {
  if (!line.raw?.startsWith('{')) return null;
  const parsed = JSON.parse(line.raw) as { type?: string; data?: string };
  return parsed.type === 'printf' ? (parsed.data ?? null) : null;
}

/** The steps every bridge + host-local handshake on the lab has (the phase names of docs/records.md), below the CRI call. */
export const bridgeHandshakeSteps = [
  'netns create',
  'cni ADD loopback',
  'cni ADD bridge',
  'ipam host-local',
  'veth create',
  'bridge attach',
  'addr add',
  'route add',
  'sandbox start',
];
