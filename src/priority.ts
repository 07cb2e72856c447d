// The daemon's CPU priority: tracing yields to the pods it watches.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { setPriority } from 'node:os';

/**
 * Sets the niceness of every thread of this process. Linux's setpriority acts on one thread, and Node's own
 * (V8's compilers and garbage collector, libuv's pool) exist before podwire runs: niced one by one here. Threads
 * and processes made later (bpftrace, readers) inherit it from the main thread. Returns the threads it set.
 */
export function niceEveryThread(nice: number): number {
  const value = Math.max(-20, Math.min(19, Math.trunc(nice)));
  setPriority(0, value);
  let set = 1;
  for (const task of readdirSync('/proc/self/task')) {
    const tid = Number(task);
    if (tid === process.pid) continue;
    try {
      setPriority(tid, value);
      set++;
    } catch {
      // The thread ended meanwhile.
    }
  }
  return set;
}

/** idle: SCHED_IDLE, podwire runs only on CPU the node's own work leaves idle. normal: SCHED_OTHER at its nice. */
export type CpuPolicy = 'idle' | 'normal';

/**
 * Sets the scheduling policy of every thread of each process, through util-linux's chrt (Node has no
 * sched_setscheduler). SCHED_OTHER keeps each thread's nice. Threads and children made later inherit it. A process
 * that has ended meanwhile is skipped. Returns why it could not, or null.
 */
export function setCpuPolicy(pids: number[], policy: CpuPolicy): string | null {
  const flag = policy === 'idle' ? '--idle' : '--other';
  for (const pid of pids) {
    try {
      execFileSync('chrt', ['--all-tasks', flag, '--pid', '0', String(pid)], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
    } catch (error) {
      const failure = error as NodeJS.ErrnoException & { stderr?: Buffer };
      if (failure.code === 'ENOENT')
        return 'chrt is not installed (apt-get install util-linux, or --cpu-policy normal)';
      if (!existsSync(`/proc/${pid}`)) continue;
      const said = failure.stderr?.toString().trim().split('\n').at(-1);
      return `chrt could not set pid ${pid}: ${said || failure.message}`;
    }
  }
  return null;
}

/** The policy a thread runs under, from /proc (SCHED_IDLE is 5), or null when it cannot be read. */
export function cpuPolicyOf(tid: number): CpuPolicy | 'other' | null {
  try {
    const policy = /^policy\s+:\s+(\d+)/m.exec(readFileSync(`/proc/${tid}/sched`, 'utf8'))?.[1];
    return policy === '5' ? 'idle' : policy === '0' ? 'normal' : 'other';
  } catch {
    return null;
  }
}

export interface CpuPolicyEvents {
  /** The processes to set besides podwire itself (bpftrace, the trace_pipe reader). */
  children(): number[];
  /** A status line: the policy could not be set, or changed because of lost events. */
  say(message: string, policy: CpuPolicy): void;
}

/**
 * podwire at idle priority, so that it never takes CPU from the pods it watches (bench/README.md: at nice 10 it
 * still lengthened RunPodSandbox by ~4%, at SCHED_IDLE by nothing measurable) — and at normal priority for a while
 * after it fell behind and lost events on a node whose CPUs were all busy, so that it catches up.
 */
export class CpuPolicyControl {
  private current: CpuPolicy = 'normal';
  private timer: NodeJS.Timeout | null = null;
  private failed = false;

  constructor(
    private readonly events: CpuPolicyEvents,
    readonly catchUpMs = 60_000,
    private readonly apply: (pids: number[], policy: CpuPolicy) => string | null = setCpuPolicy,
  ) {}

  get policy(): CpuPolicy {
    return this.current;
  }

  private set(policy: CpuPolicy): boolean {
    const why = this.apply([process.pid, ...this.events.children()], policy);
    if (why) {
      this.failed = true;
      this.events.say(`cannot run at ${policy} priority: ${why}`, this.current);
      return false;
    }
    this.current = policy;
    return true;
  }

  /** Idle from now on: podwire's threads now, and the children it starts later (they inherit it). */
  start(): void {
    this.set('idle');
  }

  /** Events were lost: normal priority until catchUpMs have passed without more losses. */
  eventsLost(): void {
    if (this.failed) return;
    if (this.timer) clearTimeout(this.timer);
    else if (this.current === 'idle') {
      if (!this.set('normal')) return;
      this.events.say(
        `events were lost at idle priority (all CPUs busy): normal priority for ${this.catchUpMs / 1000} s to catch up`,
        'normal',
      );
    } else return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.set('idle'))
        this.events.say(
          `no events lost for ${this.catchUpMs / 1000} s: back to idle priority`,
          'idle',
        );
    }, this.catchUpMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
