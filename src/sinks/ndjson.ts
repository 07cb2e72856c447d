// The NDJSON sink: one JSON object a line, the contract users' scripts read (docs/records.md).
import type { Writable } from 'node:stream';
import type { HandshakeRecord } from '../correlate/record.js';
import type { StatusEvent } from '../events.js';

export interface Sink {
  write(record: HandshakeRecord | StatusEvent): void;
  /** For a source that can wait (replay): a promise while the sink is behind, null when it keeps up. */
  backlog?(): Promise<void> | null;
  close(): Promise<void>;
}

const texts = new WeakMap<object, string>();

/** A record as its NDJSON line (without the newline), made once however many sinks want it as text. */
export function recordText(record: HandshakeRecord | StatusEvent): string {
  let text = texts.get(record);
  if (text === undefined) {
    text = JSON.stringify(record);
    texts.set(record, text);
  }
  return text;
}

export class NdjsonSink implements Sink {
  /** Set once the stream failed: nothing more is written to it. */
  private broken = false;

  /**
   * `readerGone`: what to do when the reader went away (`podwire trace | head -3`: EPIPE), the same stop as a
   * SIGINT, so that the other sinks get every record and the probes are removed. Without it, the process ends there.
   */
  constructor(
    private readonly stream: Writable,
    readerGone: () => void = () => process.exit(0),
  ) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (this.broken) return;
      this.broken = true;
      if (error.code === 'EPIPE') return readerGone();
      process.stderr.write(`podwire: cannot write the output: ${error.message}\n`);
      process.exitCode = 1;
    });
  }

  write(record: HandshakeRecord | StatusEvent): void {
    if (!this.broken) this.stream.write(`${recordText(record)}\n`);
  }

  /** Whether the reader went away or the stream failed: a source that can stop early (replay) stops. */
  get gone(): boolean {
    return this.broken;
  }

  close(): Promise<void> {
    if (this.broken) return Promise.resolve();
    return new Promise((resolve) => {
      if (this.stream === process.stdout) this.stream.write('', () => resolve());
      else this.stream.end(() => resolve());
    });
  }
}
