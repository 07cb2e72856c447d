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
  constructor(private readonly stream: Writable) {
    // A reader that went away (`podwire replay FILE | head`) ends the output, not the process with a stack trace.
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(0);
      process.stderr.write(`podwire: cannot write the output: ${error.message}\n`);
      process.exitCode = 1;
    });
  }

  write(record: HandshakeRecord | StatusEvent): void {
    this.stream.write(`${recordText(record)}\n`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.stream === process.stdout) this.stream.write('', () => resolve());
      else this.stream.end(() => resolve());
    });
  }
}
