// `podwire attach`'s side of the socket: finds the daemon that serves the live view and reads its stream line by line.
import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { HandshakeRecord } from '../correlate/record.js';
import type { StatusEvent } from '../events.js';
import type { AttachHello } from './protocol.js';
import { socketName } from './protocol.js';
import { probeSocket, removeStaleSockets } from './server.js';

const needsRoot =
  'podwire attach needs root, as podwire trace does (sudo on the node, or kubectl exec into the podwire pod)';

const startOne = (dir: string) =>
  `start podwire trace (it serves the live view unless --no-attach-socket), or pass --socket PATH if its socket is not in ${dir}`;

/** The one daemon's socket in `dir`; an error line when there is none, several, or `dir` cannot be read. */
export async function findSocket(dir: string): Promise<{ path: string } | { error: string }> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      return {
        error: `no podwire serves a live view here: ${dir} does not exist; ${startOne(dir)}`,
      };
    if (code === 'EACCES' || code === 'EPERM')
      return { error: `cannot look in ${dir} (${code}): ${needsRoot}` };
    return { error: `cannot read ${dir}: ${code ?? (error as Error).message}` };
  }
  if (!names.some((name) => socketName.test(name)))
    return { error: `no podwire serves a live view here: no socket in ${dir}; ${startOne(dir)}` };
  // Sockets of daemons that died (kill -9) are removed as the next daemon would remove them.
  const stale = await removeStaleSockets(dir);
  const live: { path: string; pid: number }[] = [];
  for (const name of readdirSync(dir)) {
    const match = socketName.exec(name);
    if (!match) continue;
    const path = join(dir, name);
    const state = await probeSocket(path);
    if (state === 'denied') return { error: `cannot open ${path} (EACCES): ${needsRoot}` };
    if (state === 'live') live.push({ path, pid: Number(match[1]) });
  }
  live.sort((a, b) => a.pid - b.pid);
  const removed = stale.length > 0 ? ` (removed ${stale.length} left by a podwire that died)` : '';
  const [only] = live;
  if (!only)
    return {
      error: `no podwire serves a live view here: no live socket in ${dir}${removed}; ${startOne(dir)}`,
    };
  if (live.length > 1)
    return {
      error: `${live.length} podwire daemons serve a live view here (pids ${live.map((l) => l.pid).join(', ')}): choose one with --socket, e.g. --socket ${only.path}`,
    };
  return { path: only.path };
}

export type StreamLine = HandshakeRecord | StatusEvent;

export interface StreamEvents {
  /** The daemon's first line. */
  hello(hello: AttachHello, text: string): void;
  /** Each line after it, as text (exactly as `podwire trace --json` writes it) and parsed (null if not asked). */
  line(text: string, line: StreamLine | null): void;
  /**
   * The stream ended: `stopped` when the daemon said its `stopped` status (a stop), else why it ended. Also when
   * the connection could not be made (`error`) or the daemon refused it (too many viewers).
   */
  end(end: { stopped: boolean; error: string | null }): void;
}

export interface AttachStream {
  /** Reading waits (the reader is behind: a pipe); the daemon lets the viewer go if it waits too long. */
  pause(): void;
  resume(): void;
  close(): void;
}

/** Reads the daemon's stream at `path`: its hello, then the backlog and the live lines. */
export function openStream(
  path: string,
  events: StreamEvents,
  { parse = true }: { parse?: boolean } = {},
): AttachStream {
  const socket: Socket = connect(path);
  socket.setEncoding('utf8');
  let partial = '';
  let hello: AttachHello | null = null;
  let stopped = false;
  let ended = false;
  const finish = (error: string | null) => {
    if (ended) return;
    ended = true;
    socket.destroy();
    events.end({ stopped, error });
  };
  const take = (text: string) => {
    if (text === '') return;
    // Passed on as text (--json): the only line looked into is the daemon's last, its `stopped` status (status()
    // puts kind and state first).
    if (hello && !parse) {
      if (text.startsWith('{"kind":"status","state":"stopped"')) stopped = true;
      events.line(text, null);
      return;
    }
    let value: { kind?: unknown; state?: unknown; message?: unknown };
    try {
      value = JSON.parse(text) as typeof value;
    } catch {
      finish(`${path} sent a line that is not JSON: not a podwire live view`);
      return;
    }
    if (!hello) {
      if (value.kind === 'attach-refused') return finish(`the daemon refused: ${value.message}`);
      if (value.kind !== 'attach')
        return finish(`${path} did not open with its hello line: not a podwire live view`);
      hello = value as AttachHello;
      events.hello(hello, text);
      return;
    }
    if (value.kind === 'status' && value.state === 'stopped') stopped = true;
    events.line(text, value as StreamLine);
  };
  socket.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (ended) return;
      take(line);
    }
  });
  // A last line without its newline was cut by the daemon letting this viewer go: it is not passed on.
  socket.on('end', () =>
    finish(hello ? null : `${path} closed the connection before saying who it is`),
  );
  socket.on('close', () => finish(null));
  socket.on('error', (error: NodeJS.ErrnoException) => {
    if (hello) return finish(`the connection failed: ${error.code ?? error.message}`);
    if (error.code === 'EACCES' || error.code === 'EPERM')
      return finish(`cannot open ${path} (${error.code}): ${needsRoot}`);
    if (error.code === 'ECONNREFUSED')
      return finish(
        `nothing listens on ${path} (ECONNREFUSED): the podwire that made it is gone; ${startOne(path.replace(/\/[^/]*$/, ''))}`,
      );
    if (error.code === 'ENOENT') return finish(`${path} does not exist`);
    finish(`cannot open ${path}: ${error.code ?? error.message}`);
  });
  return {
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    close: () => {
      ended = true;
      socket.destroy();
    },
  };
}
