// The daemon's CPU priority: tracing yields to the pods it watches.
import { readdirSync } from 'node:fs';
import { setPriority } from 'node:os';

/**
 * Sets the niceness of every thread of this process. Linux's setpriority acts on one thread, and Node's own
 * (V8's compilers and garbage collector, libuv's pool) exist before podwire runs: niced one by one here. Threads
 * and processes made later (bpftrace, readers) inherit it from the main thread.
 */
export function niceEveryThread(nice: number): void {
  const value = Math.max(-20, Math.min(19, Math.trunc(nice)));
  setPriority(0, value);
  for (const task of readdirSync('/proc/self/task')) {
    const tid = Number(task);
    if (tid === process.pid) continue;
    try {
      setPriority(tid, value);
    } catch {
      // The thread ended meanwhile.
    }
  }
}
