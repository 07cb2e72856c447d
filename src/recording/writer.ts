// Writes a recording as the live run goes: the header, then each line as it happens.
import { createWriteStream, type WriteStream } from 'node:fs';
import { type RecordedLine, type RecordingHeader, recordingVersion } from './format.js';

/** What the live run knows at its start; the writer adds the kind, version and start time. */
export type RecordingSetup = Omit<RecordingHeader, 'kind' | 'version' | 'started'>;

export class RecordingWriter {
  private stream: WriteStream | null;

  /**
   * Opens `file` and writes the header. A write that fails later (a full disk, the file removed) ends the
   * recording, never the tracing: `stopped` gets one line saying so.
   */
  constructor(
    readonly file: string,
    setup: RecordingSetup,
    stopped: (message: string) => void,
  ) {
    const stream = createWriteStream(file);
    this.stream = stream;
    stream.once('error', (error) => {
      this.stream = null;
      stopped(
        `the recording ${file} stopped: ${error.message}; tracing goes on without it (free space, or record elsewhere)`,
      );
    });
    const header: RecordingHeader = {
      kind: 'podwire-recording',
      version: recordingVersion,
      started: new Date().toISOString(),
      ...setup,
    };
    stream.write(`${JSON.stringify(header)}\n`);
  }

  write(line: RecordedLine): void {
    this.stream?.write(`${JSON.stringify(line)}\n`);
  }

  /** Flushes what is written and closes the file. */
  end(): Promise<void> {
    const stream = this.stream;
    this.stream = null;
    return new Promise((resolve) => (stream ? stream.end(resolve) : resolve()));
  }
}
