// The daemon's side of `podwire attach`: a sink that streams what `--json` writes to viewers on a local unix socket,
// at no cost to tracing: each line is made once for all viewers, and a viewer that falls behind is let go.

import { chmodSync, lstatSync, mkdirSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { HandshakeRecord } from '../correlate/record.js';
import { type StatusEvent, status } from '../events.js';
import { nodeName } from '../node-name.js';
import { recordText, type Sink } from '../sinks/ndjson.js';
import { type AttachHello, attachDir, podwireVersion, socketName, socketPath } from './protocol.js';

export interface AttachServerOptions {
  /** Default /run/podwire. */
  dir?: string;
  /** What the daemon's own header says of its exports (traces, metrics); null when none. */
  exportState: string | null;
  /** Says a viewer was let go, to every sink (this one too): the daemon's log keeps it. */
  status: (event: StatusEvent) => void;
  /** Unsent bytes (the backlog aside) past which a viewer is disconnected. Default 4 MiB. */
  maxUnsentBytes?: number;
  /** Records kept for a viewer that connects later: as many as the timeline keeps. Default 2000. */
  backlogRecords?: number;
  /** And at most these many bytes of them. Default 32 MiB. */
  backlogBytes?: number;
  /** Viewers at once; one more is told so and closed. Default 16. */
  maxViewers?: number;
}

const defaultMaxUnsentBytes = 4 * 1024 * 1024;
const defaultBacklogRecords = 2000;
const defaultBacklogBytes = 32 * 1024 * 1024;
/** The backlog is handed to a viewer's socket this much at a time, as it reads: never all of it queued at once. */
const backlogChunkBytes = 64 * 1024;
const defaultMaxViewers = 16;
/** Status lines kept from the start (runtime found, plugin probes, ready): what a header is made of. */
const startStatuses = 100;
/** Status lines kept after the start: lost and late events, restarts, export trouble. */
const recentStatuses = 200;
/** At the stop, how long viewers get to read what is still queued for them before they are cut. */
const closeWaitMs = 1000;

type Line = HandshakeRecord | StatusEvent;

/**
 * What a viewer that connects now is sent before the live lines: the daemon's start (its first status lines up to
 * `ready`), the last status lines since, and the last records, as their NDJSON text: the text is what stdout made
 * already (recordText), and half the memory of the records themselves (2000 lab records: 16 MB, against 31 MB).
 */
class Backlog {
  private seq = 0;
  private readonly start: Kept[] = [];
  private startDone = false;
  private readonly statuses: Kept[] = [];
  private readonly records: Kept[] = [];
  private recordBytes = 0;

  constructor(
    private readonly maxRecords: number,
    private readonly maxRecordBytes: number,
  ) {}

  add(line: Line): void {
    const entry = { seq: this.seq++, text: recordText(line) };
    if (line.kind !== 'status') {
      this.records.push(entry);
      this.recordBytes += entry.text.length;
      while (
        this.records.length > this.maxRecords ||
        (this.recordBytes > this.maxRecordBytes && this.records.length > 1)
      )
        this.recordBytes -= this.records.shift()?.text.length ?? 0;
    } else if (!this.startDone && this.start.length < startStatuses) {
      this.start.push(entry);
      if (line.state === 'ready') this.startDone = true;
    } else {
      this.statuses.push(entry);
      if (this.statuses.length > recentStatuses) this.statuses.shift();
    }
  }

  /** The kept lines in the order they came. */
  lines(): { lines: string[]; records: number; statuses: number } {
    const entries = [...this.start, ...this.statuses, ...this.records].sort(
      (a, b) => a.seq - b.seq,
    );
    return {
      lines: entries.map((entry) => entry.text),
      records: this.records.length,
      statuses: this.start.length + this.statuses.length,
    };
  }
}

interface Kept {
  seq: number;
  text: string;
}

interface Viewer {
  id: number;
  socket: Socket;
  /** The backlog lines not yet handed to the socket (null once all are): sent as the viewer reads them. */
  backlog: string[] | null;
  next: number;
  /** Live lines waiting for the backlog to be sent, and their bytes. */
  waiting: Buffer[];
  waitingBytes: number;
}

export class AttachServer implements Sink {
  private readonly viewers = new Set<Viewer>();
  private readonly kept: Backlog;
  private readonly maxUnsentBytes: number;
  private readonly maxViewers: number;
  private readonly started = new Date().toISOString();
  private nextViewer = 1;
  private closed = false;
  private readonly removeAtExit = () => this.removeSocket();
  /** Viewers let go because they fell behind or sent data; for the status lines and the tests. */
  dropped = 0;
  /** Viewers served since the start. */
  served = 0;

  private constructor(
    private readonly server: Server,
    readonly path: string,
    private readonly dir: { path: string; created: boolean },
    private readonly options: AttachServerOptions,
  ) {
    this.kept = new Backlog(
      options.backlogRecords ?? defaultBacklogRecords,
      options.backlogBytes ?? defaultBacklogBytes,
    );
    this.maxUnsentBytes = options.maxUnsentBytes ?? defaultMaxUnsentBytes;
    this.maxViewers = options.maxViewers ?? defaultMaxViewers;
    server.on('connection', (socket) => this.connected(socket));
    // A crash or process.exit() leaves no socket behind; a kill -9 does, and the next daemon or attach removes it.
    process.once('exit', this.removeAtExit);
  }

  /**
   * Serves the live view in `dir` (default /run/podwire), made 0700 and the socket 0600, both root's (the daemon's
   * user): only root can connect. Sockets of daemons that died are removed. An error says why it cannot serve.
   */
  static async start(options: AttachServerOptions): Promise<AttachServer | { error: string }> {
    const dir = options.dir ?? attachDir;
    const made = ownDirectory(dir);
    if ('error' in made) return made;
    await removeStaleSockets(dir);
    const path = socketPath(dir, process.pid);
    const server = createServer({ allowHalfOpen: false });
    const listening = new Promise<string | null>((resolve) => {
      server.once('listening', () => resolve(null));
      server.once('error', (error: NodeJS.ErrnoException) =>
        resolve(`cannot listen on ${path}: ${error.code ?? error.message}`),
      );
    });
    // The socket is made 0600 as it is bound (the directory already keeps others out), then said again.
    const umask = process.umask(0o177);
    try {
      server.listen(path);
    } finally {
      process.umask(umask);
    }
    const failed = await listening;
    if (failed) {
      server.close();
      return { error: failed };
    }
    try {
      chmodSync(path, 0o600);
    } catch (error) {
      server.close();
      return { error: `cannot chmod ${path}: ${(error as NodeJS.ErrnoException).code}` };
    }
    return new AttachServer(server, path, made, options);
  }

  /** Viewers connected now. */
  get viewerCount(): number {
    return this.viewers.size;
  }

  write(record: Line): void {
    this.kept.add(record);
    if (this.viewers.size === 0) return;
    // Made once for every viewer (recordText is shared with the NDJSON sink on stdout, and cached).
    const bytes = Buffer.from(`${recordText(record)}\n`);
    for (const viewer of this.viewers) {
      let unsent: number;
      if (viewer.backlog) {
        viewer.waiting.push(bytes);
        viewer.waitingBytes += bytes.length;
        unsent = viewer.waitingBytes;
      } else {
        viewer.socket.write(bytes);
        unsent = viewer.socket.writableLength;
      }
      if (unsent > this.maxUnsentBytes)
        this.drop(
          viewer,
          'fell behind',
          `${unsent} bytes unsent, over the bound of ${this.maxUnsentBytes}`,
          unsent,
        );
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // What is queued (the `stopped` line) goes out to viewers that read; one that does not is cut.
    for (const viewer of this.viewers) viewer.socket.end();
    const cut = setTimeout(() => {
      for (const viewer of this.viewers) viewer.socket.destroy();
    }, closeWaitMs);
    await serverClosed;
    clearTimeout(cut);
    this.removeSocket();
    process.removeListener('exit', this.removeAtExit);
  }

  private removeSocket(): void {
    try {
      unlinkSync(this.path);
    } catch {
      // Already gone (libuv unlinks a closed server's socket).
    }
    // A directory this daemon made goes too when no other daemon serves there (a hostPath mount point stays: EBUSY).
    if (this.dir.created) {
      try {
        rmdirSync(this.dir.path);
      } catch {
        // Not empty, or a mount point.
      }
    }
  }

  private connected(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    if (this.viewers.size >= this.maxViewers) {
      socket.end(
        `${JSON.stringify({ kind: 'attach-refused', message: `${this.maxViewers} viewers are attached already, the most this podwire serves` })}\n`,
      );
      socket.on('error', () => {});
      return;
    }
    const { lines, records, statuses } = this.kept.lines();
    const hello: AttachHello = {
      kind: 'attach',
      pid: process.pid,
      node: nodeName(),
      version: podwireVersion(),
      started: this.started,
      socket: this.path,
      exportState: this.options.exportState,
      backlog: { records, statuses },
      maxUnsentBytes: this.maxUnsentBytes,
    };
    const viewer: Viewer = {
      id: this.nextViewer++,
      socket,
      backlog: lines,
      next: 0,
      waiting: [],
      waitingBytes: 0,
    };
    this.viewers.add(viewer);
    this.served++;
    // A viewer that went away (EPIPE, ECONNRESET, its end) is just forgotten.
    socket.on('error', () => this.viewers.delete(viewer));
    socket.on('close', () => this.viewers.delete(viewer));
    // Viewers only read: whatever one sends is not looked at, and the connection is closed.
    socket.on('data', () =>
      this.drop(viewer, 'sent data', 'a viewer can only read', socket.writableLength),
    );
    socket.on('drain', () => this.sendBacklog(viewer));
    socket.write(`${JSON.stringify(hello)}\n`);
    this.sendBacklog(viewer);
  }

  /** Hands the viewer's socket its next backlog lines while it reads, then the live lines that waited for them. */
  private sendBacklog(viewer: Viewer): void {
    const { backlog, socket } = viewer;
    if (!backlog || socket.destroyed) return;
    while (viewer.next < backlog.length && socket.writableLength < backlogChunkBytes)
      socket.write(`${backlog[viewer.next++]}\n`);
    if (viewer.next < backlog.length) return;
    viewer.backlog = null;
    for (const bytes of viewer.waiting) socket.write(bytes);
    viewer.waiting = [];
    viewer.waitingBytes = 0;
  }

  private drop(viewer: Viewer, reason: string, detail: string, unsentBytes: number): void {
    if (!this.viewers.delete(viewer)) return;
    viewer.socket.destroy();
    this.dropped++;
    // Said after the write that found it, never from inside it: the status goes to this sink too.
    setImmediate(() => {
      if (this.closed) return;
      this.options.status(
        status(
          'viewer-dropped',
          `podwire attach: viewer ${viewer.id} ${reason} (${detail}) and was disconnected; tracing goes on`,
          { viewer: viewer.id, reason, unsentBytes, droppedTotal: this.dropped },
        ),
      );
    });
  }
}

/** The socket directory, made if missing; only its owner (the daemon's user, root) may enter it. */
function ownDirectory(dir: string): { path: string; created: boolean } | { error: string } {
  let created: boolean;
  try {
    created = mkdirSync(dir, { recursive: true, mode: 0o700 }) !== undefined;
  } catch (error) {
    return { error: `cannot create ${dir}: ${(error as NodeJS.ErrnoException).code}` };
  }
  const stat = lstatSync(dir);
  if (!stat.isDirectory()) return { error: `${dir} is not a directory: remove it` };
  const uid = process.geteuid?.() ?? 0;
  if (stat.uid !== uid)
    return {
      error: `${dir} belongs to uid ${stat.uid}, not to podwire's (${uid}): another user could replace its sockets; remove it`,
    };
  if ((stat.mode & 0o777) !== 0o700) {
    try {
      chmodSync(dir, 0o700);
    } catch (error) {
      return { error: `cannot chmod 0700 ${dir}: ${(error as NodeJS.ErrnoException).code}` };
    }
  }
  return { path: dir, created };
}

/** Whether a daemon answers on `path`: 'stale' when none listens (it died), 'gone' when there is no socket. */
export function probeSocket(path: string): Promise<'live' | 'stale' | 'gone' | 'denied'> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve('live');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      socket.destroy();
      if (error.code === 'ECONNREFUSED') resolve('stale');
      else if (error.code === 'ENOENT') resolve('gone');
      else if (error.code === 'EACCES' || error.code === 'EPERM') resolve('denied');
      // Busy (EAGAIN: a full accept queue) or anything else: someone may be there, so it stays.
      else resolve('live');
    });
  });
}

/** Removes the sockets of daemons that died without removing theirs (kill -9); returns their paths. */
export async function removeStaleSockets(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    if (!socketName.test(name)) continue;
    const path = join(dir, name);
    try {
      if (!lstatSync(path).isSocket()) continue;
    } catch {
      continue;
    }
    if ((await probeSocket(path)) !== 'stale') continue;
    try {
      unlinkSync(path);
      removed.push(path);
    } catch {
      // Removed meanwhile by another.
    }
  }
  return removed;
}
