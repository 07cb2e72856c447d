// Children that end with the daemon: a podwire killed with -9 leaves no bpftrace or trace_pipe reader behind.
// After an OOM kill or a node drain, a bpftrace still attached or a reader holding its tracefs instance open would
// keep the next daemon from starting.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** util-linux's setpriv (Debian: essential), which sets PR_SET_PDEATHSIG and then execs the program in place. */
const setprivPaths = ['/usr/bin/setpriv', '/bin/setpriv'];

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

let setpriv: string | null | undefined;

function findSetpriv(): string | null {
  setpriv ??= setprivPaths.find(executable) ?? null;
  return setpriv;
}

/** `command` as a path, found on PATH as exec would, or null when there is none. */
export function onPath(command: string, path = process.env.PATH ?? ''): string | null {
  if (command.includes('/')) return executable(command) ? command : null;
  for (const dir of path.split(delimiter)) {
    if (dir && executable(join(dir, command))) return join(dir, command);
  }
  return null;
}

/**
 * The file and arguments to spawn so that `command` gets `signal` when the daemon dies (same pid: setpriv execs
 * it). Without setpriv, or when `command` is not there (spawn's own ENOENT then names it), it is run as it is.
 * `detached` (give it to spawn): the child runs in a process group of its own, so that a terminal's Ctrl-C, or
 * `timeout`, which signal the whole foreground group, reach the daemon alone; it then ends its children in order.
 * In the daemon's group, bpftrace and the trace_pipe reader would get that SIGINT too and end by themselves while
 * the daemon stops, and the reader would be reported dead and restarted in the middle of the stop.
 */
export function tiedToDaemon(
  command: string,
  args: string[],
  signal: 'KILL' | 'TERM' | 'INT' = 'KILL',
): { file: string; args: string[]; detached: true } {
  const wrapper = findSetpriv();
  const target = onPath(command);
  if (!wrapper || !target) return { file: command, args, detached: true };
  return { file: wrapper, args: ['--pdeathsig', signal, '--', target, ...args], detached: true };
}
