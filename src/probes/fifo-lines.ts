// Children's stdout through FIFOs that podwire reads on one timer: many lines per wake-up instead of one.
//
// bpftrace writes once per event, hundreds of times per pod. Read through a Node stream, each write would wake the
// daemon, and waking a process that slept costs more than decoding the line it brings, CPU taken from the very pods
// being traced (bench/README.md). Here each child writes into a FIFO and one timer empties every FIFO with
// non-blocking reads, a few times a second while lines come and more rarely when none do. Nothing is lost while it
// waits: a full FIFO blocks the writer, bpftrace's events wait in its perf buffers meanwhile, and a wake-up that
// finds a FIFO full comes back at once.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';

/**
 * The timer's period while lines come; with none it doubles, up to idlePollMs. Records wait for the reorder
 * window anyway; bigger batches cost the daemon less per line, as each wake-up finds code and data cold.
 */
export const busyPollMs = 250;
export const idlePollMs = 400;
/** After a wake-up that found a FIFO full (its child was, or soon will be, blocked writing): this soon again. */
const fullPollMs = 2;
/** A Linux pipe's default capacity: a wake-up that read this much found the FIFO full. */
const fifoCapacity = 64 * 1024;
/** Reads per FIFO per wake-up at most, so that a child that never stops writing cannot starve the event loop. */
const readsPerDrain = 64;

/** The one timer of every open FifoLines, and who wants to know when it has run. */
const open = new Set<FifoLines>();
const afterTick = new Set<(linesSeen: boolean) => void>();
let timer: NodeJS.Timeout | null = null;
let waitMs = busyPollMs;

function schedule(): void {
  if (timer === null && open.size > 0) timer = setTimeout(tick, waitMs);
}

function tick(): void {
  timer = null;
  let read = 0;
  let full = false;
  for (const fifo of [...open]) {
    const got = fifo.drain();
    if (got === 'eof') fifo.close();
    else {
      read += got;
      if (got >= fifoCapacity) full = true;
    }
  }
  waitMs = full ? fullPollMs : read > 0 ? busyPollMs : Math.min(idlePollMs, waitMs * 2);
  for (const listener of afterTick) listener(read > 0);
  schedule();
}

/**
 * Calls `listener` after every wake-up of the timer, with whether it found any lines (a wake-up without is
 * at least busyPollMs after the last line). Returns the function that stops it.
 */
export function onPollTick(listener: (linesSeen: boolean) => void): () => void {
  afterTick.add(listener);
  return () => afterTick.delete(listener);
}

export class FifoLines {
  private readonly readFd: number;
  private writeFd: number | null;
  private readonly decoder = new StringDecoder('utf8');
  private readonly chunk = Buffer.allocUnsafe(64 * 1024);
  private partial = '';
  private closed = false;

  /**
   * Makes a FIFO in a directory of its own, opens both ends and removes the name again (the open ends keep it),
   * so that nothing is left behind whatever happens later. `onLine` gets each line without its "\n".
   */
  constructor(private readonly onLine: (line: string) => void) {
    const dir = mkdtempSync(join(tmpdir(), 'podwire-fifo-'));
    try {
      const path = join(dir, 'lines');
      execFileSync('mkfifo', ['-m', '600', path]);
      // The read end first and non-blocking, so that opening the write end does not wait for a reader.
      this.readFd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
      this.writeFd = openSync(path, constants.O_WRONLY);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** The end to give the child as its stdout. Call childStarted() once it has it. */
  get childEnd(): number {
    if (this.writeFd === null) throw new Error('the FIFO was already handed to a child');
    return this.writeFd;
  }

  /** Closes podwire's copy of the write end (the child keeps its own: end of file is the child's exit) and polls. */
  childStarted(): void {
    if (this.writeFd !== null) closeSync(this.writeFd);
    this.writeFd = null;
    if (this.closed) return;
    open.add(this);
    // A new child has lines to say soon (bpftrace's attach): listen closely again.
    if (timer !== null && waitMs > busyPollMs) {
      clearTimeout(timer);
      timer = null;
      waitMs = busyPollMs;
    }
    schedule();
  }

  /**
   * Reads what there is now, up to readsPerDrain reads: the bytes it read, or 'eof' when every writer has closed
   * the FIFO.
   */
  drain(): number | 'eof' {
    if (this.closed) return 'eof';
    let read = 0;
    for (let reads = 0; reads < readsPerDrain; reads++) {
      let n: number;
      try {
        n = readSync(this.readFd, this.chunk, 0, this.chunk.length, null);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EAGAIN') return read;
        throw error;
      }
      if (n === 0) {
        this.flush(this.decoder.end());
        return 'eof';
      }
      read += n;
      this.flush(
        this.decoder.write(n === this.chunk.length ? this.chunk : this.chunk.subarray(0, n)),
      );
    }
    return read;
  }

  private flush(text: string): void {
    if (text === '') return;
    let start = 0;
    let end = text.indexOf('\n');
    if (end === -1) {
      this.partial += text;
      return;
    }
    if (this.partial !== '') {
      const first = this.partial + text.slice(0, end);
      this.partial = '';
      this.onLine(first);
      start = end + 1;
      end = text.indexOf('\n', start);
    }
    while (end !== -1) {
      this.onLine(text.slice(start, end));
      start = end + 1;
      end = text.indexOf('\n', start);
    }
    if (start < text.length) this.partial = text.slice(start);
  }

  /** Reads what is left (the child has exited), gives a last line without "\n" too, and closes the FIFO. */
  close(): void {
    if (this.closed) return;
    open.delete(this);
    if (open.size === 0 && timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    if (this.writeFd !== null) closeSync(this.writeFd);
    this.writeFd = null;
    try {
      for (let got = this.drain(); got !== 'eof' && got > 0; got = this.drain());
    } finally {
      this.closed = true;
      closeSync(this.readFd);
      if (this.partial !== '') this.onLine(this.partial);
      this.partial = '';
    }
  }
}
