// Writes a recording as the live run goes: the header, then each line as it happens.
import { closeSync, openSync, writeSync } from 'node:fs';
import { type RecordedLine, type RecordingHeader, recordingVersion } from './format.js';

/** What the live run knows at its start; the writer adds the kind, version and start time. */
export type RecordingSetup = Omit<RecordingHeader, 'kind' | 'version' | 'started'>;

/**
 * Each line is handed to the kernel (a write(2), no fsync) before the live run goes back to the event loop: lines
 * wait in memory only while the batch of input they came in is handled, so a `kill -9` of podwire (an OOM kill)
 * loses at most that batch, and the file ends with whole lines or one cut line that replay reports and skips. A
 * WriteStream would keep every line written while its previous write is in flight, for as long as the event loop
 * is busy.
 */
export class RecordingWriter {
  private fd: number | null = null;
  /** Lines written since the last flush, in order. */
  private pending = '';
  private flushQueued = false;

  /**
   * Opens `file` and writes the header. A write that fails (the file cannot be made, a full disk) ends the
   * recording, never the tracing: `stopped` gets one line saying so, after the constructor has returned.
   */
  constructor(
    readonly file: string,
    setup: RecordingSetup,
    private readonly stopped: (message: string) => void,
  ) {
    try {
      this.fd = openSync(file, 'w');
    } catch (error) {
      queueMicrotask(() => this.stop(error as Error));
      return;
    }
    const header: RecordingHeader = {
      kind: 'podwire-recording',
      version: recordingVersion,
      started: new Date().toISOString(),
      ...setup,
    };
    this.append(`${JSON.stringify(header)}\n`);
  }

  write(line: RecordedLine): void {
    if (this.fd !== null) this.append(`${JSON.stringify(line)}\n`);
  }

  /** Flushes what is written and closes the file. */
  end(): Promise<void> {
    this.flush();
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    return Promise.resolve();
  }

  private append(text: string): void {
    this.pending += text;
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.flushQueued = false;
    const fd = this.fd;
    if (fd === null || this.pending === '') return;
    const bytes = Buffer.from(this.pending);
    this.pending = '';
    try {
      for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at);
    } catch (error) {
      try {
        closeSync(fd);
      } catch {
        // Already failing: the first error is the one to tell.
      }
      this.stop(error as Error);
    }
  }

  private stop(error: Error): void {
    this.fd = null;
    this.pending = '';
    this.stopped(
      `the recording ${this.file} stopped: ${error.message}; tracing goes on without it (free space, or record elsewhere)`,
    );
  }
}
