// Reads a recording: its header, then its lines brought to today's format, each checked for the shape podwire writes.
import { createReadStream, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { gunzipSync } from 'node:zlib';
import { type RecordedLine, type RecordingHeader, recordingVersion } from './format.js';
import { upgrader } from './upgrade.js';

const remedy = 'record one with podwire trace --record FILE';

/** The header a recording's first line holds, or a one-line error that names the file and the fix. */
export function recordingHeader(text: string | undefined, file: string): RecordingHeader {
  if (text === undefined || text.trim() === '') throw new Error(`${file} is empty: ${remedy}`);
  let parsed: Partial<RecordingHeader>;
  try {
    parsed = JSON.parse(text) as Partial<RecordingHeader>;
  } catch {
    throw new Error(`${file} is not a podwire recording (its first line is not JSON): ${remedy}`);
  }
  if (parsed?.kind !== 'podwire-recording')
    throw new Error(
      `${file} is not a podwire recording (its first line has no "kind":"podwire-recording"): ${remedy}`,
    );
  const version = parsed.version ?? 1;
  if (!Number.isInteger(version) || version < 1 || version > recordingVersion)
    throw new Error(
      `${file} is a recording of format version ${version}; this podwire reads versions 1 to ${recordingVersion}: replay it with the podwire that recorded it, or a newer one`,
    );
  return { ...parsed, version } as RecordingHeader;
}

/** A parsed line as a RecordedLine, or null when it is not one podwire writes. */
export function recordedLine(parsed: unknown): RecordedLine | null {
  if (typeof parsed !== 'object' || parsed === null) return null;
  const line = parsed as Record<string, unknown>;
  if (line.drain === true) return { drain: true };
  if (typeof line.cri === 'boolean') return { cri: line.cri };
  if (typeof line.src !== 'string') return null;
  if (line.probe === 'up' || line.probe === 'down' || line.probe === 'gone') {
    const ticks = line.ticks === true || line.ticks === 'batches' ? line.ticks : undefined;
    return ticks === undefined
      ? { src: line.src, probe: line.probe }
      : { src: line.src, probe: line.probe, ticks };
  }
  if (typeof line.raw === 'string') return { src: line.src, raw: line.raw };
  return null;
}

/** One line read after the header: a line in today's format, or what was wrong with it. */
export type ReadLine = { line: RecordedLine } | { problem: string };

/** Reads the lines after the header of `file`, one JSON text at a time, upgrading them to today's format. */
class LineReader {
  private readonly upgrade: (line: RecordedLine) => RecordedLine[];
  private lineNumber = 1;

  constructor(
    readonly header: RecordingHeader,
    private readonly file: string,
  ) {
    this.upgrade = upgrader(header);
  }

  read(text: string): ReadLine[] {
    this.lineNumber++;
    if (text.trim() === '') return [];
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return [{ problem: `${this.file}:${this.lineNumber}: not JSON; skipped` }];
    }
    const line = recordedLine(parsed);
    if (line === null)
      return [{ problem: `${this.file}:${this.lineNumber}: not a line podwire records; skipped` }];
    return this.upgrade(line).map((upgraded) => ({ line: upgraded }));
  }
}

/** A whole recording in memory, as text: its header and its lines in today's format (problems left out). */
export function parseRecording(
  text: string,
  file: string,
): { header: RecordingHeader; lines: RecordedLine[] } {
  const texts = text.split('\n');
  const reader = new LineReader(recordingHeader(texts[0], file), file);
  const lines: RecordedLine[] = [];
  for (const line of texts.slice(1))
    for (const read of reader.read(line)) if ('line' in read) lines.push(read.line);
  return { header: reader.header, lines };
}

/** A recording file read whole (gzipped when its name ends in .gz). */
export function readRecordingFile(file: string | URL): {
  header: RecordingHeader;
  lines: RecordedLine[];
} {
  const bytes = readFileSync(file);
  const text = (String(file).endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8');
  return parseRecording(text, String(file));
}

/** A recording file read as a stream: its header first, then each line (or problem) as it is read. */
export async function openRecording(
  file: string,
): Promise<{ header: RecordingHeader; lines: AsyncGenerator<ReadLine> }> {
  const texts = createInterface({
    input: createReadStream(file),
    crlfDelay: Number.POSITIVE_INFINITY,
  })[Symbol.asyncIterator]();
  const first = await texts.next();
  const reader = new LineReader(recordingHeader(first.done ? undefined : first.value, file), file);
  async function* lines(): AsyncGenerator<ReadLine> {
    for (let next = await texts.next(); !next.done; next = await texts.next())
      yield* reader.read(next.value);
  }
  return { header: reader.header, lines: lines() };
}
