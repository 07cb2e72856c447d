// Replays a real recording through the same pipeline as `podwire replay`, optionally edited first.
import { readFileSync } from 'node:fs';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import type { RecordingHeader } from '../../src/recording/format.js';
import { pipelineFor, replayLine } from '../../src/recording/replay.js';

export interface RecordingLine {
  src?: string;
  raw?: string;
  probe?: 'up' | 'down' | 'gone';
  ticks?: boolean;
  drain?: boolean;
}

export function readRecording(name: string): { header: RecordingHeader; lines: RecordingLine[] } {
  const text = readFileSync(new URL(`../fixtures/recordings/${name}`, import.meta.url), 'utf8');
  const [first, ...rest] = text.trim().split('\n');
  return {
    header: JSON.parse(first ?? '{}') as RecordingHeader,
    lines: rest.map((line) => JSON.parse(line) as RecordingLine),
  };
}

export function replay(header: RecordingHeader, lines: RecordingLine[]): HandshakeRecord[] {
  const pipeline = pipelineFor(header);
  const records: HandshakeRecord[] = [];
  for (const line of lines) records.push(...(replayLine(pipeline, { ...line })?.records ?? []));
  records.push(...pipeline.finish().records);
  return records;
}

/** The printf data of a recorded bpftrace line, or null for other lines. */
export function printfData(line: RecordingLine): string | null {
  if (!line.raw?.startsWith('{')) return null;
  const parsed = JSON.parse(line.raw) as { type?: string; data?: string };
  return parsed.type === 'printf' ? (parsed.data ?? null) : null;
}

/** The steps every bridge + host-local handshake on the lab has (DESIGN.md's phase names), below the CRI call. */
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
