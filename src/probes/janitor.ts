// The janitor: a small shell process each daemon starts before it places any probe, in a session of its own, that
// outlives the daemon. It removes the daemon's tracefs uprobe events and instances when told to, and all of them
// once the daemon is gone, however it went: a stop, `| head`, an OOM kill or `kill -9`. The kernel takes seconds
// to let go of uprobes (a grace period for each); the daemon exits at once and leaves that wait to the janitor.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { attachDir } from '../attach/protocol.js';

/** janitor.sh beside this module (npm run build copies it to dist/). */
export const janitorScript = fileURLToPath(new URL('./janitor.sh', import.meta.url));

/** Removes a daemon's tracefs objects for it; the daemon can exit without waiting for the kernel. */
export interface Janitor {
  /** Removes this uprobe event group (and its trace instance) now, while the daemon goes on. */
  removeGroup(group: string): void;
  /**
   * Tells the janitor the daemon is done (it removes everything of it that is left, then ends) and resolves once
   * it has ended, or with false after `timeoutMs`. For a daemon whose exit would end the janitor too: in a pod,
   * the runtime kills whatever the container leaves when its first process exits.
   */
  finish(timeoutMs: number): Promise<boolean>;
}

/**
 * Starts the janitor for this process; returns why not in one line when it cannot run (the daemon then removes
 * its events itself, which makes its stop take seconds, and a kill -9 leaves them for the next podwire).
 */
export function startJanitor(tracefs: string): Janitor | string {
  if (!existsSync(janitorScript))
    return `${janitorScript} is missing (npm run build copies it): a stop waits for the kernel to remove the probes`;
  let child: ChildProcess;
  try {
    // Not tied to the daemon and in a session of its own: a Ctrl-C to the daemon's group, or its death, must not
    // end it. Its stdin is the one thing it shares with the daemon; it ends when the daemon's process does.
    child = spawn('/bin/sh', [janitorScript, String(process.pid), tracefs, tmpdir(), attachDir], {
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
  } catch (error) {
    return `cannot start the janitor (/bin/sh ${janitorScript}): ${(error as Error).message}`;
  }
  const pid = child.pid;
  const stdin = child.stdin;
  if (pid === undefined || !stdin) return 'cannot start the janitor: /bin/sh did not start';
  let alive = true;
  const gone = () => {
    alive = false;
  };
  child.once('exit', gone);
  child.once('error', gone);
  stdin.on('error', gone);
  // Neither the janitor nor the pipe to it keeps the daemon from exiting.
  child.unref();
  (stdin as unknown as { unref?: () => void }).unref?.();
  const ended = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  return {
    removeGroup(group: string) {
      if (!alive) throw new Error(`the janitor (pid ${pid}) has ended`);
      stdin.write(`${group}\n`);
    },
    async finish(timeoutMs: number) {
      if (!alive) return true;
      stdin.end();
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      });
      const result = await Promise.race([ended.then(() => true as const), late]);
      clearTimeout(timer);
      return result;
    },
  };
}

/** Whether a janitor is still removing what the daemon `daemonPid` left (it will finish on its own). */
export function janitorWorksFor(daemonPid: number): boolean {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (argv[1]?.endsWith('/janitor.sh') && argv[2] === String(daemonPid)) return true;
    } catch {
      // Gone meanwhile.
    }
  }
  return false;
}
