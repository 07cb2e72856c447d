// CRI calls through the kernel's own uprobe events (tracefs uprobe_events): a plain uprobe on each handler's entry
// and on every RET. bpftrace 0.17 as Debian builds it refuses uprobes inside a function ("compiled without
// (k|u)probe offset support"), and uretprobes must never touch Go; tracefs has neither limit. Each hit becomes the
// same cri_* line a bpftrace program would print, so recordings and the pipeline do not care which ran it.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { appendFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { criCallLayout, type GoFieldPath, type RuntimeInspection } from '../binaries/runtime.js';
import type { TickMode } from '../correlate/pipeline.js';
import {
  EntryJoiner,
  type EventDefinition,
  tickMarker,
  traceLineToProbeLines,
} from '../decode/trace-pipe.js';
import { FifoLines } from './fifo-lines.js';
import { type Janitor, janitorWorksFor } from './janitor.js';
import type { ProbeSource, ProbeSourceEvents } from './source.js';
import { tiedToDaemon } from './tied.js';

export const tracefs = '/sys/kernel/tracing';

/** The names the correlator reads in cri_arg lines, from the layout's field names. */
const argName: Record<string, string> = {
  podName: 'name',
  podUid: 'uid',
  podNamespace: 'namespace',
  podSandboxId: 'sandbox_id',
  containerId: 'container_id',
};

/**
 * Fetch args for a Go string field: its length, then the bytes (tracefs reads on to a NUL, so the length cuts
 * them). The length comes first: the bytes read past the string may hold a newline, which ends the trace line.
 */
function stringFetch(register: string, path: GoFieldPath, name: string): string {
  let pointer = `%${register}`;
  for (const offset of path.offsets.slice(0, -1)) pointer = `+${offset}(${pointer})`;
  const last = path.offsets.at(-1) ?? 0;
  const bytes = idNames.has(name) ? `x8[${idBytes}]` : 'string';
  return `${name}_len=+${last + 8}(${pointer}):u64 ${name}=+0(+${last}(${pointer})):${bytes}`;
}

/**
 * Sandbox and container ids are read as exactly 64 bytes, not as a string: a Go string has no NUL, so a string
 * fetch reads on past the id, and where the id ends near a page that is not in memory the whole read fails
 * ("(fault)"), and the call is lost. Runtimes make ids of 64 hex digits; a shorter one is cut at its length, as
 * strings are.
 */
const idNames = new Set(['sandbox_id', 'container_id', 'id']);
const idBytes = 64;

/** The uprobe_events lines for one binary; file offsets, as the kernel's uprobe events take them. */
export function criEventDefinitions(
  inspection: RuntimeInspection,
  group: string,
): EventDefinition[] {
  const definitions: EventDefinition[] = [];
  const probed = new Map<string, number>();
  for (const point of inspection.points) {
    // A method probed in a second CRI server of the same binary (containerd 1.7's sbserver) gets names of its own.
    const earlier = probed.get(point.method) ?? 0;
    probed.set(point.method, earlier + 1);
    const eventBase = earlier === 0 ? point.method : `${point.method}_${earlier}`;
    const layout = criCallLayout(point.method, inspection.messageShift, point.kind);
    const inArgs = ['g=%r14:x64'];
    if (layout.requestRegister) {
      for (const [field, path] of Object.entries(layout.requestFields)) {
        const name = argName[field];
        if (name && path.kind === 'string')
          inArgs.push(stringFetch(layout.requestRegister, path, name));
      }
    }
    const event = `${eventBase}_in`;
    definitions.push({
      event,
      method: point.method,
      side: 'in',
      line: `p:${group}/${event} ${inspection.binary}:0x${point.entryOffset.toString(16)} ${inArgs.join(' ')}`,
    });
    const outArgs = ['g=%r14:x64', `err=%${layout.errorRegister}:x64`];
    const id = Object.entries(layout.responseFields).find(([, path]) => path.kind === 'string');
    if (id) outArgs.push(stringFetch(layout.responseRegister, id[1], 'id'));
    point.returnOffsets.forEach((offset, index) => {
      const out = `${eventBase}_out${index}`;
      definitions.push({
        event: out,
        method: point.method,
        side: 'out',
        line: `p:${group}/${out} ${inspection.binary}:0x${offset.toString(16)} ${outArgs.join(' ')}`,
      });
    });
  }
  return definitions;
}

/**
 * The process of a thread, or 0 when it cannot be known: the line is read after the hit, and Go ends a thread
 * that a goroutine locked and left (containerd does so after creating a pod's netns) before we look.
 */
function tgidOfThread(tid: number): number {
  try {
    const status = readFileSync(`/proc/${tid}/status`, 'utf8');
    return Number(/^Tgid:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** What removeStaleGroups did: the groups it removed, and one line for each it could not. */
export interface StaleGroups {
  removed: string[];
  problems: string[];
}

/** Removes the uprobe events and trace instances of podwire daemons that died without cleaning up. */
export async function removeStaleGroups(): Promise<StaleGroups> {
  const result: StaleGroups = { removed: [], problems: [] };
  const events = readFileSync(join(tracefs, 'uprobe_events'), 'utf8');
  const groups = new Map(
    [...events.matchAll(/^p:(podwire_(\d+)(?:_\d+)?)\//gm)].map((m) => [
      m[1] as string,
      Number(m[2]),
    ]),
  );
  for (const [group, pid] of groups) {
    if (existsSync(`/proc/${pid}`) && pid !== process.pid) continue;
    // A daemon that stopped a moment ago: its janitor is still removing them.
    if (pid !== process.pid && janitorWorksFor(pid)) continue;
    try {
      await removeGroup(group, events);
      result.removed.push(group);
    } catch (error) {
      // Not fatal: tracing goes on. The stale group keeps costing its runtime a little, and should this daemon's
      // pid be the dead one's (a container restarted), that runtime's CRI probes fail with a status saying why.
      result.problems.push(
        `cannot remove the uprobe events left by a podwire that died (${group}): ${(error as Error).message}`,
      );
    }
  }
  return result;
}

/** The pids that hold `file` open (from /proc/PID/fd), podwire's own and others alike. */
function holdersOf(file: string): number[] {
  const holders: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue; // Gone meanwhile, or a kernel thread.
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${entry}/fd/${fd}`) === file) {
          holders.push(Number(entry));
          break;
        }
      } catch {
        // Closed meanwhile.
      }
    }
  }
  return holders;
}

/** Whether `pid` is a trace_pipe reader a podwire started for `pipe` (`cat PIPE`, alone by then). */
function isOurReader(pid: number, pipe: string): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    return argv.length === 2 && /(^|\/)cat$/.test(argv[0] as string) && argv[1] === pipe;
  } catch {
    return false;
  }
}

/**
 * An instance cannot be removed while its trace_pipe is open. A podwire killed with -9 before its readers ended
 * with it (tied.ts) left a `cat` of that pipe behind: that reader, and only that, is ended by its pid.
 */
async function removeInstance(instance: string): Promise<void> {
  try {
    rmdirSync(instance);
    return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EBUSY') throw error;
  }
  const pipe = join(instance, 'trace_pipe');
  const holders = holdersOf(pipe);
  const others = holders.filter((pid) => !isOurReader(pid, pipe));
  if (others.length > 0)
    throw new Error(
      `${pipe} is held open by pid ${others.join(', ')}: end it, then start podwire again`,
    );
  for (const pid of holders) process.kill(pid, 'SIGKILL');
  for (let waited = 0; ; waited += 20) {
    try {
      rmdirSync(instance);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EBUSY' || waited >= 2000) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Disables and removes one group: the disabling waits for the kernel (about 25 ms an event), so it runs
 * asynchronously, and the event loop stays free meanwhile. The events go in one write where the kernel takes a
 * whole group (`-:GROUP/`), else one by one.
 */
async function removeGroup(group: string, events: string): Promise<void> {
  const instance = join(tracefs, 'instances', group);
  if (existsSync(instance)) {
    try {
      await writeFile(join(instance, 'events', group, 'enable'), '0');
    } catch {
      // Not enabled there.
    }
    await removeInstance(instance);
  }
  const uprobeEvents = join(tracefs, 'uprobe_events');
  try {
    await appendFile(uprobeEvents, `-:${group}/\n`);
  } catch {
    for (const match of events.matchAll(new RegExp(`^p:${group}/(\\w+) `, 'gm')))
      await appendFile(uprobeEvents, `-:${group}/${match[1]}\n`);
  }
}

/** How long after its reader ended trace_pipe is read again. */
const rereadMs = 1000;

/**
 * A probe source (source.ts) for one runtime binary's CRI handlers. start() creates the events in a group of its
 * own (podwire_<pid>_<index>), enables them in a trace instance of its own, and reads that instance's trace_pipe
 * through `cat`, a child it can end by pid; a reader that ends by itself is started again (died says so). stop()
 * removes all of it.
 */
export class UprobeEventsRunner implements ProbeSource {
  private reader: ChildProcess | null = null;
  private stopped = false;
  private rereadTimer: NodeJS.Timeout | null = null;
  /** The instance's trace_marker, open while reading. */
  private marker: number | null = null;
  private readonly group: string;
  private readonly definitions: EventDefinition[];
  private readonly byEvent: Map<string, EventDefinition>;
  private readonly tgids = new Map<number, number>();
  /** Always 0: only its reader is ever started again, over probes that stayed in place (source.ts). */
  readonly restarts = 0;

  /** `index` tells this daemon's runners apart: one event group per runtime binary. */
  constructor(
    readonly name: string,
    inspection: RuntimeInspection,
    private readonly events: ProbeSourceEvents,
    index = 0,
  ) {
    this.group = `podwire_${process.pid}_${index}`;
    this.definitions = criEventDefinitions(inspection, this.group);
    this.byEvent = new Map(this.definitions.map((d) => [d.event, d]));
  }

  private tgid(tid: number): number {
    let tgid = this.tgids.get(tid);
    if (tgid === undefined) {
      tgid = tgidOfThread(tid);
      if (this.tgids.size > 10_000) this.tgids.clear();
      this.tgids.set(tid, tgid);
    }
    return tgid;
  }

  /**
   * true: trace_pipe is read in time order, so its lines say how far it has been read as its ticks do; false
   * while its trace_marker cannot be opened (an old kernel): tick() then asks nothing.
   */
  get tickMode(): TickMode {
    return this.marker !== null;
  }

  /** Creates and enables the events, then reads them; returns why not, when they could not be created. */
  start(): string | null {
    const failed = this.attach();
    if (failed) return `${failed}; tracing goes on without CRI calls for it`;
    this.read();
    return null;
  }

  private attach(): string | null {
    const instance = join(tracefs, 'instances', this.group);
    try {
      for (const definition of this.definitions)
        appendFileSync(join(tracefs, 'uprobe_events'), `${definition.line}\n`);
      mkdirSync(instance, { recursive: true });
      writeFileSync(join(instance, 'trace_clock'), 'mono');
      writeFileSync(join(instance, 'events', this.group, 'enable'), '1');
      return null;
    } catch (error) {
      const errorLog = join(tracefs, 'error_log');
      const log = existsSync(errorLog)
        ? readFileSync(errorLog, 'utf8').trim().split('\n').slice(-2).join(' | ')
        : '';
      void this.cleanup();
      return `cannot create uprobe events in ${tracefs}: ${(error as Error).message}${log ? ` (${log})` : ''}`;
    }
  }

  /**
   * Reads the instance's trace_pipe through `cat`, a child podwire ends by its pid, into a FIFO read on the shared
   * timer (fifo-lines.ts): one wake-up of the daemon for many CRI calls.
   */
  private read(): void {
    const entries = new EntryJoiner(this.byEvent, (raw) => {
      const lines = traceLineToProbeLines(raw, this.byEvent, (tid) => this.tgid(tid));
      if (typeof lines === 'string') {
        // Not dropped unseen: trace_pipe's "[LOST N EVENTS]" counts as bpftrace's losses do (what is in flight is
        // reported incomplete); any other line goes on as it came, counted as unreadable and kept in a recording.
        const lost = /\[LOST (\d+) EVENTS\]/.exec(raw);
        this.events.line(lost ? `Lost ${lost[1]} events` : raw);
        return;
      }
      for (const data of lines)
        this.events.line(JSON.stringify({ type: 'printf', data: `${data}\n` }));
    });
    const stdout = new FifoLines((raw) => entries.push(raw));
    let reader: ChildProcess;
    try {
      // Ends with the daemon: an orphan reader would hold the instance open, and the next daemon could not remove it.
      const run = tiedToDaemon('cat', [join(tracefs, 'instances', this.group, 'trace_pipe')]);
      reader = spawn(run.file, run.args, {
        detached: run.detached,
        stdio: ['ignore', stdout.childEnd, 'ignore'],
      });
    } finally {
      stdout.childStarted();
    }
    this.reader = reader;
    reader.once('exit', (code, signal) => {
      stdout.close(); // what it wrote before it ended, first
      entries.flush();
      if (this.reader !== reader) return;
      this.reader = null;
      this.closeMarker();
      this.events.died(
        `the trace_pipe reader (cat, pid ${reader.pid}) ended by itself (${signal ?? `exit code ${code}`}); reading again in ${rereadMs / 1000} s`,
        rereadMs,
      );
      this.rereadTimer = setTimeout(() => {
        this.rereadTimer = null;
        if (!this.stopped) this.read();
      }, rereadMs);
    });
    try {
      this.marker = openSync(join(tracefs, 'instances', this.group, 'trace_marker'), 'w');
    } catch {
      // No marker (an old kernel): the pipeline then bounds these events by the newest of any source.
      this.marker = null;
    }
    // Never from inside start() (source.ts): the caller may not be ready for its events yet.
    queueMicrotask(() => {
      if (this.reader === reader) this.events.attached(this.definitions.length);
    });
  }

  /** The pid of the trace_pipe reader, while there is one. */
  get readerPid(): number | undefined {
    return this.reader?.pid;
  }

  private closeMarker(): void {
    if (this.marker !== null) closeSync(this.marker);
    this.marker = null;
  }

  /** Asks for a tick line: it comes once trace_pipe has been read past this moment. */
  tick(): void {
    if (this.marker === null) return;
    try {
      writeSync(this.marker, tickMarker);
    } catch {
      // The instance is going away (stop): nothing is waited for from it any more.
    }
  }

  private async cleanup(): Promise<void> {
    try {
      await removeGroup(this.group, readFileSync(join(tracefs, 'uprobe_events'), 'utf8'));
    } catch {
      // tracefs gone (unmounted): nothing of ours is left in it.
    }
  }

  /** Ends the reader; the events are removed by the janitor when there is one (its removal takes seconds). */
  async stop(janitor?: Janitor | null): Promise<void> {
    this.stopped = true;
    if (this.rereadTimer) clearTimeout(this.rereadTimer);
    const reader = this.reader;
    this.reader = null;
    this.closeMarker();
    if (reader?.pid !== undefined && reader.exitCode === null) {
      const exited = new Promise((resolve) => reader.once('exit', resolve));
      reader.kill('SIGTERM');
      await exited;
    }
    if (janitor) {
      try {
        janitor.removeGroup(this.group);
        return;
      } catch {
        // The janitor has ended: removed here, then.
      }
    }
    await this.cleanup();
  }
}
