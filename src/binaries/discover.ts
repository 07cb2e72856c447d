// Finds the container runtimes running on this node by their executables, so that `podwire trace` needs no flags.
import { readdirSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';

export interface RunningRuntime {
  runtime: 'containerd';
  binary: string;
  pids: number[];
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
    const binary = exe.replace(/ \(deleted\)$/, '');
    if (basename(binary) !== 'containerd') continue;
    const found = byBinary.get(binary) ?? { runtime: 'containerd' as const, binary, pids: [] };
    found.pids.push(Number(entry));
    byBinary.set(binary, found);
  }
  return [...byBinary.values()];
}
