// Finds the container runtimes running on this node by their executables, so that `podwire trace` needs no flags.
// Inside a container (a DaemonSet pod with hostPID) the runtime's files are not at the paths it names them by:
// they are reached through the root of the runtime's process, /proc/<pid>/root, which the kernel resolves for
// podwire's own opens and for the uprobes it registers.
import { readdirSync, readlinkSync, statSync } from 'node:fs';
import { basename } from 'node:path';

export interface RunningRuntime {
  runtime: 'containerd';
  /** The executable as podwire opens it: its path, under the runtime's root when podwire's own does not reach it. */
  binary: string;
  /** The directory podwire reaches the runtime's files through: '' when it shares the runtime's root. */
  root: string;
  pids: number[];
}

/** The file system root of a process, as device and inode: two processes with the same see the same files. */
function rootId(pid: number | 'self'): string | null {
  try {
    const stat = statSync(`/proc/${pid}/root/`);
    return `${stat.dev}:${stat.ino}`;
  } catch {
    return null;
  }
}

/**
 * Where podwire reaches the files of process `pid`: '' when it has podwire's own root; /proc/1/root when it has
 * the root of the node's first process (the host's, for a DaemonSet with hostPID), which stays valid when the
 * runtime restarts; else the process's own /proc/<pid>/root.
 */
export function rootOf(pid: number): string {
  const root = rootId(pid);
  if (root === null || root === rootId('self')) return '';
  return root === rootId(1) ? '/proc/1/root' : `/proc/${pid}/root`;
}

function sameFile(a: string, b: string): boolean {
  try {
    const [x, y] = [statSync(a), statSync(b)];
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

/**
 * Where podwire reaches the node's files: the root of the node's first process, which is podwire's own on the node
 * and /proc/1/root in a pod that shares the node's processes (hostPID) but has its image as root. Where the first
 * process cannot be looked into (a sandboxed init), the root of a running containerd stands in for it.
 */
export function nodeRoot(): string {
  if (rootId(1) !== null) return rootOf(1);
  return runningRuntimes()[0]?.root ?? '';
}

/** Every running containerd (the machine's, the lab's, any other), grouped by binary: one probe set per binary. */
export function runningRuntimes(): RunningRuntime[] {
  const byBinary = new Map<string, RunningRuntime>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let exe: string;
    try {
      exe = readlinkSync(`/proc/${entry}/exe`);
    } catch {
      continue;
    }
    // A binary replaced on disk while running reads as "/usr/bin/containerd (deleted)".
    const named = exe.replace(/ \(deleted\)$/, '');
    if (basename(named) !== 'containerd') continue;
    const root = rootOf(Number(entry));
    // The kernel names the executable relative to podwire's root when it can: then the name opens it as it is.
    const binary = root === '' || sameFile(named, `/proc/${entry}/exe`) ? named : `${root}${named}`;
    const found = byBinary.get(binary) ?? {
      runtime: 'containerd' as const,
      binary,
      root,
      pids: [],
    };
    found.pids.push(Number(entry));
    byBinary.set(binary, found);
  }
  return [...byBinary.values()];
}
