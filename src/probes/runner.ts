// Runs one bpftrace program as a child process: its JSON lines as a stream, restarts with backoff when it dies.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { TickMode } from '../correlate/pipeline.js';
import { FifoLines } from './fifo-lines.js';
import type { Janitor } from './janitor.js';
import { readyLine } from './program.js';
import type { ProbeSource, ProbeSourceEvents, ReadyNote } from './source.js';
import { tiedToDaemon } from './tied.js';

/** bpftrace's memlock complaint: the limit cannot be raised here, and the kernel charges BPF memory to the cgroup. */
export const memlockNoise = /RLIMIT_MEMLOCK|ulimit -l/;

/** bpftrace's noise on this kind of machine: the memlock line, attach counts, compiler warnings and their carets. */
const noise =
  /Attaching \d+ probe|WARNING: .*Addrspace|WARNING: Could not determine instruction boundary|arithmetic on integers of different signs|^\s*[~^]+\s*$|^\s+\S.*$/;

/** Each runner's program file lives in a directory named for the daemon's pid (removeStaleProbeDirs). */
const probeDirPrefix = 'podwire-probe-';

/** Removes the program directories of podwire daemons that died without cleaning up (killed with -9). */
export function removeStaleProbeDirs(): void {
  for (const entry of readdirSync(tmpdir())) {
    const pid = new RegExp(`^${probeDirPrefix}(\\d+)-`).exec(entry)?.[1];
    if (pid === undefined || Number(pid) === process.pid || existsSync(`/proc/${pid}`)) continue;
    rmSync(join(tmpdir(), entry), { recursive: true, force: true });
  }
}

/**
 * The library preloaded into bpftrace so that it reads its buffers every few milliseconds instead of being woken for
 * each event (bpftrace-poll.c), built next to this file by `npm run build`.
 */
export const pollLibrary = fileURLToPath(new URL('./bpftrace-poll.so', import.meta.url));

/** What builds the library where it is missing. */
export const pollLibraryFix = 'apt-get install gcc libc6-dev, then npm run build';

/**
 * How often bpftrace reads its buffers by default (ms): records wait this much longer, at most. Each read wakes
 * bpftrace, and a wake-up costs the pods starting about as much as the work it brings (bench/README.md).
 */
export const defaultPollMs = 100;

export interface RunnerOptions {
  bpftrace?: string;
  /** 0: bpftrace is woken for each event, as it is alone. */
  pollMs?: number;
  /** bpftrace-poll.so; null: none (woken for each event). */
  pollLibrary?: string | null;
}

/** A program that includes probes/tick.bt answers the daemon's getpriority calls with tick lines. */
const answersTicks = /^tracepoint:syscalls:sys_enter_getpriority$/m;

/**
 * A probe source (source.ts) that is one bpftrace program. Lines are stdout, and the "Lost N events" lines of
 * stderr (bpftrace 0.17 puts them there); when bpftrace dies, its last error lines are the message.
 */
export class ProbeRunner implements ProbeSource {
  private child: ChildProcess | null = null;
  /** The running child's stdout. */
  private stdout: FifoLines | null = null;
  private stopping = false;
  private restartsSoFar = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly dir: string;
  private readonly file: string;
  private stderrTail: string[] = [];
  private reloading = false;
  private args: string[] = [];
  private ticks = false;
  private readonly bpftrace: string;
  private readonly pollMs: number;
  private readonly pollLibrary: string | null;

  constructor(
    readonly name: string,
    program: string,
    private readonly events: ProbeSourceEvents,
    options: RunnerOptions = {},
  ) {
    this.bpftrace = options.bpftrace ?? 'bpftrace';
    this.pollMs = options.pollMs ?? defaultPollMs;
    this.pollLibrary = options.pollLibrary === undefined ? pollLibrary : options.pollLibrary;
    this.dir = mkdtempSync(join(tmpdir(), `${probeDirPrefix}${process.pid}-`));
    this.file = join(this.dir, `${name.replace(/[^\w.-]+/g, '_')}.bt`);
    this.setProgram(program);
  }

  private setProgram(program: string): void {
    writeFileSync(this.file, program);
    // bpftrace 0.17 wants --unsafe for a uprobe at an address in a stripped binary (plugin-io.bt); the program
    // itself uses nothing unsafe (no system(), no signals).
    this.args = /^uprobe:\S+:0x[0-9a-f]+/m.test(program) ? ['--unsafe'] : [];
    this.ticks = answersTicks.test(program);
  }

  /**
   * 'batches': a tick bounds what is unread only at the start of bpftrace's print batch (probes/tick.bt), its
   * events do not; false for a program without tick.bt.
   */
  get tickMode(): TickMode {
    return this.ticks ? 'batches' : false;
  }

  /** getpriority(PRIO_PROCESS, the daemon's pid), which tick.bt answers at bpftrace's next batch or two. */
  tick(): void {
    try {
      getPriority(process.pid);
    } catch {
      // Cannot fail for our own pid; were it to, this program's events would be bounded by the next tick.
    }
  }

  /** Runs another program in place of this one (plugins changed): not a failure, so no backoff. */
  reload(program: string): void {
    this.setProgram(program);
    const child = this.child;
    if (child?.pid !== undefined && child.exitCode === null) {
      this.reloading = true;
      void this.end(child);
    } else if (!this.stopping && !this.timer) {
      this.run();
    }
  }

  /**
   * How the running bpftrace learns of new events, as the ready line tells it: read every pollMs when it has loaded
   * the library (its memory map says so), else woken for each one, and why.
   */
  get wakeups(): string {
    if (this.pollMs <= 0) return 'is woken for each event (--bpftrace-poll 0)';
    if (!this.pollLibrary) return 'is woken for each event (no bpftrace-poll library)';
    if (!existsSync(this.pollLibrary))
      return `is woken for each event: ${this.pollLibrary} is not built (${pollLibraryFix})`;
    let maps = '';
    try {
      maps = readFileSync(`/proc/${this.child?.pid}/maps`, 'utf8');
    } catch {
      return 'is woken for each event: bpftrace is not running';
    }
    return maps.includes(this.pollLibrary)
      ? `reads its buffers every ${this.pollMs} ms`
      : `is woken for each event: ${this.bpftrace} did not load ${this.pollLibrary} (a static or setuid bpftrace ignores LD_PRELOAD)`;
  }

  readyNote(): ReadyNote {
    const wakeups = this.wakeups;
    return { text: `bpftrace ${wakeups}`, fields: { bpftraceWakeups: wakeups } };
  }

  get restarts(): number {
    return this.restartsSoFar;
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** Starts bpftrace; it never fails here: a bpftrace that cannot run says so through died(). */
  start(): null {
    this.run();
    return null;
  }

  private run(): void {
    this.stderrTail = [];
    // BPFTRACE_STRLEN on 0.17, BPFTRACE_MAX_STRLEN on 0.23+: the probes read strings in 199-byte chunks.
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      BPFTRACE_STRLEN: '200',
      BPFTRACE_MAX_STRLEN: '200',
    };
    if (this.pollMs > 0 && this.pollLibrary && existsSync(this.pollLibrary)) {
      env.LD_PRELOAD = [this.pollLibrary, process.env.LD_PRELOAD].filter(Boolean).join(' ');
      env.PODWIRE_BPFTRACE_POLL_MS = String(this.pollMs);
    }
    let probes = 0;
    // stdout through a FIFO read on a timer: one wake-up for many events (see fifo-lines.ts).
    const stdout = new FifoLines((raw) => {
      // bpftrace announces the count before attaching; the BEGIN line says every probe is attached.
      if (raw.startsWith('{"type": "attached_probes"'))
        probes = Number(/"probes": (\d+)/.exec(raw)?.[1] ?? 0);
      if (raw.includes(readyLine)) return this.events.attached(probes);
      this.events.line(raw);
    });
    this.stdout = stdout;
    let child: ChildProcess;
    try {
      // Ends with the daemon (SIGTERM, so that it detaches as on a stop) even when the daemon is killed with -9.
      const run = tiedToDaemon(this.bpftrace, [...this.args, '-f', 'json', this.file], 'TERM');
      child = spawn(run.file, run.args, {
        detached: run.detached,
        env,
        stdio: ['ignore', stdout.childEnd, 'pipe'],
      });
    } finally {
      stdout.childStarted();
    }
    this.child = child;
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (raw) => {
      if (/Lost \d+ events/.test(raw)) return this.events.line(raw);
      if (memlockNoise.test(raw) || noise.test(raw) || raw.trim() === '') return;
      this.stderrTail.push(raw.trim());
      if (this.stderrTail.length > 5) this.stderrTail.shift();
    });
    child.on('error', (error) => {
      stdout.close();
      this.exited(`cannot run ${this.bpftrace}: ${error.message} (apt-get install bpftrace)`);
    });
    child.on('exit', (code, signal) => {
      stdout.close(); // what it wrote before it ended, first
      if (this.child === child)
        this.exited(this.stderrTail.join(' | ') || `bpftrace exited (${signal ?? `code ${code}`})`);
    });
  }

  private exited(message: string): void {
    this.child = null;
    if (this.stopping) return;
    if (this.reloading) {
      this.reloading = false;
      this.run();
      return;
    }
    this.restartsSoFar++;
    const delay = Math.min(30_000, 1_000 * 2 ** Math.min(this.restartsSoFar - 1, 5));
    this.events.died(`${message}; restarting in ${delay / 1000} s`, delay);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.stopping) this.run();
    }, delay);
  }

  /**
   * SIGINT lets bpftrace detach cleanly; it is ended by the pid podwire started, never by name. With a janitor (the
   * daemon is about to exit), bpftrace is not waited for: its detaching takes the kernel seconds (grace periods for
   * each probe, which bpftrace-poll.so overlaps by closing them from a few threads at once), all
   * after its last event (the Tracer's last ticks have read those), and a process that is going away needs no one
   * to wait for it; it outlives the daemon by those seconds, then ends.
   */
  async stop(janitor?: Janitor | null): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    const child = this.child;
    if (child?.pid !== undefined && child.exitCode === null) {
      if (janitor) {
        child.kill('SIGINT');
        // What it printed is read; what it would print now comes after the daemon's last ticks.
        this.stdout?.close();
        child.stderr?.destroy();
        child.unref();
      } else await this.end(child);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * Ends bpftrace by its pid: SIGINT so that it detaches and prints what it holds, SIGKILL if it has not gone 5 s
   * later (bpftrace 0.17 misses a SIGINT that comes while it prints).
   */
  private async end(child: ChildProcess): Promise<void> {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGINT');
    const force = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(force);
  }
}
