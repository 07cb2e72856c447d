// What the daemon and `podwire attach` agree on: where the sockets are, their names, and the line that opens a stream.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { installFile } from '../install.js';

/**
 * Where each daemon serves its live view: only root can enter it (0700), and the DaemonSet mounts the node's
 * directory here, so that a `kubectl exec` into the pod and a root shell on the node see the same sockets.
 */
export const attachDir = '/run/podwire';

/** One socket per daemon, named for its pid (the node's, with hostPID): attach-<pid>.sock. */
export const socketName = /^attach-(\d+)\.sock$/;

export function socketPath(dir: string, pid: number): string {
  return join(dir, `attach-${pid}.sock`);
}

/**
 * The first line of every stream: who serves it, so that the viewer's header can say what it is attached to.
 * Then come the backlog (the last records and status lines, oldest first) and the live lines, each exactly as
 * `podwire trace --json` writes it.
 */
export interface AttachHello {
  kind: 'attach';
  pid: number;
  node: string;
  version: string | null;
  /** When the daemon started serving (ISO 8601). */
  started: string;
  socket: string;
  /** Where the daemon sends traces and metrics, as its own timeline's header says; null when nowhere. */
  exportState: string | null;
  /** How many of the lines after this one are the backlog (records and status lines from before the connect). */
  backlog: { records: number; statuses: number };
  /** A viewer whose unsent lines pass this many bytes (the backlog aside) is disconnected. */
  maxUnsentBytes: number;
}

/** podwire's version from its package.json (the image has it beside dist/), or null. */
export function podwireVersion(): string | null {
  const file = installFile('package.json');
  if (!file) return null;
  try {
    const version = (JSON.parse(readFileSync(file, 'utf8')) as { version?: unknown }).version;
    return typeof version === 'string' ? version : null;
  } catch {
    return null;
  }
}
