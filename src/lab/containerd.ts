// Starts and stops the lab's private containerd by the pid it recorded, never by name.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { processAlive, processCmdline, processStartTime, stopProcess } from './host.js';
import type { LabPaths } from './paths.js';

export interface DaemonRecord {
  pid: number;
  /** Start time in clock ticks since boot: a pid reused by another process does not match it. */
  startTime: number;
  binary: string;
}

export function readDaemonRecord(paths: LabPaths): DaemonRecord | null {
  try {
    const record = JSON.parse(readFileSync(paths.pidFile, 'utf8')) as DaemonRecord;
    return typeof record.pid === 'number' && typeof record.startTime === 'number' ? record : null;
  } catch {
    return null;
  }
}

/** The recorded containerd, if it still runs and is still ours: same start time, our config on its command line. */
export function runningDaemon(paths: LabPaths): DaemonRecord | null {
  const record = readDaemonRecord(paths);
  if (!record || !processAlive(record.pid, record.startTime)) return null;
  const argv = processCmdline(record.pid) ?? [];
  return argv.includes(paths.containerdConfig) ? record : null;
}

/** Spawns containerd detached from podwire (the lab outlives the command), logging to the lab's state dir. */
export function startDaemon(paths: LabPaths, binary: string): DaemonRecord {
  if (!existsSync(binary)) {
    throw new Error(
      `containerd binary ${binary} not found: apt-get install containerd, or pass --containerd PATH`,
    );
  }
  const log = openSync(paths.containerdLog, 'a');
  try {
    // A containerd build comes with its own shim beside it: that one first on PATH.
    const path = `${dirname(binary)}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`;
    const child = spawn(binary, ['--config', paths.containerdConfig], {
      detached: true,
      stdio: ['ignore', log, log],
      env: { ...process.env, PATH: path },
    });
    if (child.pid === undefined)
      throw new Error(`could not start ${binary}: see ${paths.containerdLog}`);
    child.unref();
    const startTime = processStartTime(child.pid);
    if (startTime === null) {
      throw new Error(`${binary} exited at once: see ${paths.containerdLog}`);
    }
    const record: DaemonRecord = { pid: child.pid, startTime, binary };
    writeFileSync(paths.pidFile, `${JSON.stringify(record)}\n`);
    return record;
  } finally {
    closeSync(log);
  }
}

/** The last lines of containerd's log, for an error message that says why it did not come up. */
export function daemonLogTail(paths: LabPaths, lines = 5): string {
  try {
    const text = readFileSync(paths.containerdLog, 'utf8').trimEnd().split('\n');
    return text.slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export async function stopDaemon(paths: LabPaths): Promise<void> {
  const record = runningDaemon(paths);
  if (record) await stopProcess(record.pid, record.startTime);
  rmSync(paths.pidFile, { force: true });
}
