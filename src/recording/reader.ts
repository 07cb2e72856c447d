// Reads a recording: its header, then its lines brought to today's format, each checked for the shape podwire writes.
import { closeSync, createReadStream, openSync, readFileSync, readSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { constants, createGunzip, gunzipSync } from 'node:zlib';
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
  // Nearly every line: a raw line and nothing that makes it another kind (replayLine looks for those keys), taken
  // as it was parsed rather than copied.
  if (
    typeof line.raw === 'string' &&
    typeof line.src === 'string' &&
    line.drain === undefined &&
    line.cri === undefined &&
    line.probedPlugins === undefined &&
    line.probe === undefined
  )
    return line as RecordedLine;
  if (line.drain === true) return { drain: true };
  if (typeof line.cri === 'boolean') return { cri: line.cri };
  if (line.probedPlugins === null) return { probedPlugins: null };
  if (Array.isArray(line.probedPlugins) && line.probedPlugins.every((n) => typeof n === 'string'))
    return { probedPlugins: line.probedPlugins as string[] };
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

/** A line after the header that could not be read: what was wrong with it, in one line. */
export class LineProblem {
  constructor(readonly problem: string) {}
}

/** One line read after the header: a line in today's format, or what was wrong with it. */
export type ReadLine = RecordedLine | LineProblem;

/** Whether `text` is nothing but spaces (a blank line, which podwire never writes but an editor may leave). */
function blank(text: string): boolean {
  const first = text.charCodeAt(0);
  return first === 0x7b /* { */ ? false : text.trim() === '';
}

/** Reads the lines after the header of `file`, one JSON text at a time, upgrading them to today's format. */
class LineReader {
  private readonly upgrade: ((line: RecordedLine) => RecordedLine[]) | null;
  private lineNumber = 1;

  constructor(
    readonly header: RecordingHeader,
    private readonly file: string,
  ) {
    this.upgrade = header.version >= recordingVersion ? null : upgrader(header);
  }

  /**
   * Reads one line into `out`. `cut`: the line is the file's last and has no newline, so the recording may have
   * ended in the middle of writing it (podwire killed): said so if it cannot be read, rather than as damage.
   */
  readInto(text: string, out: ReadLine[], cut = false): void {
    this.lineNumber++;
    if (blank(text)) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      out.push(
        new LineProblem(
          cut
            ? `${this.file}:${this.lineNumber}: the last line is cut (the recording stopped while writing it: podwire killed?); skipped, every line before it read`
            : `${this.file}:${this.lineNumber}: not JSON; skipped`,
        ),
      );
      return;
    }
    const line = recordedLine(parsed);
    if (line === null) {
      out.push(
        new LineProblem(`${this.file}:${this.lineNumber}: not a line podwire records; skipped`),
      );
      return;
    }
    if (this.upgrade === null) out.push(line);
    else for (const upgraded of this.upgrade(line)) out.push(upgraded);
  }
}

/** A whole recording in memory, as text: its header, its lines in today's format, and the problems of the others. */
export function parseRecording(
  text: string,
  file: string,
): { header: RecordingHeader; lines: RecordedLine[]; problems: string[] } {
  const firstEnd = text.indexOf('\n');
  const reader = new LineReader(
    recordingHeader(firstEnd < 0 ? text : text.slice(0, firstEnd), file),
    file,
  );
  const lines: RecordedLine[] = [];
  const problems: string[] = [];
  const read: ReadLine[] = [];
  let from = firstEnd < 0 ? text.length : firstEnd + 1;
  while (from < text.length) {
    let to = text.indexOf('\n', from);
    const cut = to < 0;
    if (cut) to = text.length;
    read.length = 0;
    reader.readInto(text.slice(from, to), read, cut);
    for (const one of read)
      if (one instanceof LineProblem) problems.push(one.problem);
      else lines.push(one);
    from = to + 1;
  }
  return { header: reader.header, lines, problems };
}

const gzipped = (file: string) => file.endsWith('.gz');
/**
 * A gzip stream cut short (the file of a recording compressed while it was written, or copied mid-write) gives
 * what it has instead of an error: the reader then finds its last line cut.
 */
const gunzipOptions = { finishFlush: constants.Z_SYNC_FLUSH };

/** A recording file read whole (gzipped when its name ends in .gz). */
export function readRecordingFile(file: string | URL): {
  header: RecordingHeader;
  lines: RecordedLine[];
  problems: string[];
} {
  const bytes = readFileSync(file);
  const text = (gzipped(String(file)) ? gunzipSync(bytes, gunzipOptions) : bytes).toString('utf8');
  return parseRecording(text, String(file));
}

/** Lines split from text that comes in chunks: what follows the last newline waits for the next chunk. */
class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private rest = '';

  push(chunk: Buffer): string[] {
    // The rest is joined to the first line alone: joined to the whole chunk, the chunk was copied once more.
    const text = this.decoder.write(chunk);
    const lines: string[] = [];
    let to = text.indexOf('\n');
    if (to < 0) {
      this.rest += text;
      return lines;
    }
    lines.push(this.rest + text.slice(0, to));
    let from = to + 1;
    for (to = text.indexOf('\n', from); to >= 0; to = text.indexOf('\n', from)) {
      lines.push(text.slice(from, to));
      from = to + 1;
    }
    this.rest = text.slice(from);
    return lines;
  }

  /** The text after the last newline ('' when the input ended with one). */
  end(): string {
    return this.rest + this.decoder.end();
  }
}

/**
 * 64 KiB a chunk: a string past 128 KiB lives in V8's large-object space, where splitting it costs ten times more.
 */
const chunkBytes = 1 << 16;

/** One chunk's whole lines; the text after the last newline (a line cut by a crash) comes last, as `cut`. */
export interface FileLines {
  lines: string[];
  cut?: string;
  /** Why a gzip stream could not be read on (the lines before it were). */
  damaged?: string;
}

/**
 * A file's lines, a chunk of the file at a time (a line a time would cost more than reading it). A plain file is
 * read with readSync: a replay has nothing else to do meanwhile, and waiting for the thread pool's reads left it
 * idle a tenth of the time on a busy machine. A .gz file is read through gunzip, and a gzip stream that is damaged
 * ends the lines with `damaged` instead of failing the whole read.
 */
export async function* linesOfFile(file: string): AsyncGenerator<FileLines> {
  const splitter = new LineSplitter();
  if (!gzipped(file)) {
    const fd = openSync(file, 'r');
    try {
      const buffer = Buffer.allocUnsafe(chunkBytes);
      for (let read = readSync(fd, buffer); read > 0; read = readSync(fd, buffer)) {
        const lines = splitter.push(buffer.subarray(0, read));
        if (lines.length > 0) yield { lines };
      }
    } finally {
      closeSync(fd);
    }
  } else {
    const bytes = createReadStream(file, { highWaterMark: chunkBytes });
    const input = bytes.pipe(createGunzip({ ...gunzipOptions, chunkSize: chunkBytes }));
    bytes.once('error', (error) => input.destroy(error));
    try {
      for await (const chunk of input) {
        const lines = splitter.push(chunk as Buffer);
        if (lines.length > 0) yield { lines };
      }
    } catch (error) {
      yield { lines: [], damaged: (error as Error).message };
      return;
    }
  }
  const cut = splitter.end();
  if (cut !== '') yield { lines: [], cut };
}

/**
 * A recording file read as a stream (gzipped when its name ends in .gz): its header first, then its lines (or
 * problems) in order, a batch at a time.
 */
export async function openRecording(
  file: string,
): Promise<{ header: RecordingHeader; batches: AsyncGenerator<ReadLine[]> }> {
  const chunks = linesOfFile(file);
  let first = await chunks.next();
  while (!first.done && first.value.lines.length === 0 && first.value.cut === undefined)
    first = await chunks.next();
  const firstLines = first.done ? [] : first.value.lines;
  const headerText =
    firstLines.length > 0 ? firstLines[0] : first.done ? undefined : first.value.cut;
  let reader: LineReader;
  try {
    reader = new LineReader(recordingHeader(headerText, file), file);
  } catch (error) {
    await chunks.return(undefined);
    throw error;
  }
  const readAll = (chunk: FileLines, from: number) => {
    const read: ReadLine[] = [];
    for (let i = from; i < chunk.lines.length; i++) reader.readInto(chunk.lines[i] as string, read);
    if (chunk.cut !== undefined) reader.readInto(chunk.cut, read, true);
    if (chunk.damaged !== undefined)
      read.push(
        new LineProblem(
          `${file}: the gzip stream is damaged after the lines read so far (${chunk.damaged}); the rest is not read`,
        ),
      );
    return read;
  };
  async function* batches(): AsyncGenerator<ReadLine[]> {
    // The header's chunk holds no more lines when the header came as the cut text of an empty file.
    if (!first.done && firstLines.length > 0) yield readAll(first.value, 1);
    for await (const chunk of chunks) yield readAll(chunk, 0);
  }
  return { header: reader.header, batches: batches() };
}
