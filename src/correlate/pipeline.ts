// One path from bpftrace's raw lines to records, shared by live tracing and replay so that both give the same.

import { type AssembleResult, Assembler } from '../decode/assemble.js';
import { parseBpftraceLine } from '../decode/lines.js';
import type { ProbeEvent } from '../events.js';
import { millis } from '../time.js';
import { Correlator, type CorrelatorOptions } from './correlator.js';
import type { HandshakeRecord } from './record.js';

export interface PipelineCounters {
  lines: number;
  events: number;
  lostEvents: number;
  malformedLines: number;
  assemblyProblems: number;
  /** Events read after newer ones had already gone on to the correlator: their handshake may lack them. */
  lateEvents: number;
}

export interface PipelineOutput {
  records: HandshakeRecord[];
  /** One-line descriptions of input podwire could not use (malformed lines, lost events). */
  problems: string[];
  attached?: { source: string; probes: number };
  lost?: number;
  /** Events that came after newer ones had gone on, told at most once per second of event time. */
  late?: { count: number; message: string };
}

/** What a step gives when it gives nothing: shared, and frozen so that no caller can add to it. */
export const noOutput: PipelineOutput = Object.freeze({
  records: Object.freeze([]),
  problems: Object.freeze([]),
}) as unknown as PipelineOutput;

const newOutput = (): PipelineOutput => ({ records: [], problems: [] });

/** Events from different CPUs can arrive out of order by a little: hold each this long (event time) and sort. */
const reorderWindowNs = 250_000_000n;
/** At most this many events wait: past it the oldest go on, and what is in flight is reported as maybe missing some. */
const defaultMaxHeldEvents = 100_000;

/** The tag of the line a probe program prints when podwire asks how far it has been read (probes/tick.bt). */
export const tickTag = 'tick';

/**
 * How a source's ticks bound what is still unread. `true`: its lines come in time order (the CRI reader's
 * trace_pipe; the kernel program in some version-1 recordings), so its events say how far it has been read as its
 * ticks do. `'batches'`: only its ticks do (probes/tick.bt): bpftrace prints one CPU's buffer after another, and
 * after a starvation a newer line can come before an older one by any amount. `false`: it cannot tick.
 */
export type TickMode = boolean | 'batches';

export class Pipeline {
  private assemblers = new Map<string, Assembler>();
  /** Events waiting for the reorder window, sorted by time; those before `head` are already released. */
  private held: ProbeEvent[] = [];
  private head = 0;
  private newestNs = 0n;
  /**
   * The sources that answer ticks, each with how far it has been read (its ticks; its events too, unless its
   * TickMode is 'batches'). An event waits until every one of them has been read a window past it: a program that
   * falls behind (bpftrace starved of CPU on a busy node) holds back the others' events instead of having its own
   * judged too late. Sources that never tick are bounded by the newest event of any source.
   */
  private marks = new Map<string, bigint>();
  /** The sources whose events do not move their mark (TickMode 'batches'). */
  private byTicksOnly = new Set<string>();
  private down = new Set<string>();
  /** One assembler result reused for every line: the hot path makes no lists of its own. */
  private readonly assembled: AssembleResult = { events: [], problems: [] };
  readonly correlator: Correlator;
  readonly counters: PipelineCounters = {
    lines: 0,
    events: 0,
    lostEvents: 0,
    malformedLines: 0,
    assemblyProblems: 0,
    lateEvents: 0,
  };
  /** The newest event gone on to the correlator, and late events not yet told (at most one line per second). */
  private releasedNs = 0n;
  private lateUntold = 0;
  private lateToldNs = 0n;

  constructor(
    options: CorrelatorOptions,
    private readonly maxHeldEvents = defaultMaxHeldEvents,
  ) {
    this.correlator = new Correlator(options);
  }

  /** One raw line of one bpftrace process (`source` names it: "kernel", "cri:/usr/bin/containerd"). */
  push(source: string, raw: string): PipelineOutput {
    // Nearly every line gives nothing: the output is made only when one does.
    const out = this.nextOutput;
    this.counters.lines++;
    const parsed = parseBpftraceLine(raw);
    switch (parsed.type) {
      case 'probe': {
        if (parsed.line.tag === tickTag) {
          this.tick(source, parsed.line.ns, out);
          break;
        }
        let assembler = this.assemblers.get(source);
        if (!assembler) {
          assembler = new Assembler();
          this.assemblers.set(source, assembler);
        }
        const assembled = this.assembled;
        assembled.events.length = 0;
        assembled.problems.length = 0;
        assembler.pushInto(parsed.line, assembled);
        if (assembled.problems.length > 0) {
          this.counters.assemblyProblems += assembled.problems.length;
          out.problems.push(...assembled.problems);
        }
        if (assembled.events.length > 0) this.hold(source, assembled.events, out);
        break;
      }
      case 'attached':
        out.attached = { source, probes: parsed.probes };
        break;
      case 'lost':
        this.counters.lostEvents += parsed.count;
        out.lost = parsed.count;
        // The lost events were among those held or about to come: every handshake in flight up to a window
        // past the newest event seen may miss one. Nothing is released for it: what waits for a program behind
        // still waits (the line comes on bpftrace's stderr, ahead of the output it follows).
        this.correlator.eventsLost(
          `${source} lost ${parsed.count} event(s) while it ran`,
          this.newestNs + reorderWindowNs,
        );
        break;
      case 'malformed':
        this.counters.malformedLines++;
        out.problems.push(
          `unreadable probe line (${source}): ${parsed.why}: ${parsed.text.slice(0, 120)}`,
        );
        break;
      case 'other':
        break;
    }
    if (
      out.records.length === 0 &&
      out.problems.length === 0 &&
      out.attached === undefined &&
      out.lost === undefined &&
      out.late === undefined
    )
      return noOutput;
    this.nextOutput = newOutput();
    return out;
  }

  /** Where push() writes; handed out (and replaced) only when a line gave something. */
  private nextOutput = newOutput();

  /** A source has been read up to `ns`: from now on its events are waited for. */
  private tick(source: string, ns: bigint, out: PipelineOutput): void {
    if (this.down.has(source)) return;
    const mark = this.marks.get(source);
    if (mark === undefined || ns > mark) this.setMark(source, ns);
    if (ns > this.newestNs) this.newestNs = ns;
    this.releaseReady(out);
  }

  /** slowest() as of the last change of a mark (undefined: to be found again); asked for every line. */
  private slowestKnown: { source: string; mark: bigint } | null | undefined = undefined;

  private setMark(source: string, ns: bigint): void {
    this.marks.set(source, ns);
    this.slowestKnown = undefined;
  }

  /** The source that answers ticks and has been read least far, with how far (null when none answers ticks). */
  private slowest(): { source: string; mark: bigint } | null {
    if (this.slowestKnown !== undefined) return this.slowestKnown;
    let slowest: { source: string; mark: bigint } | null = null;
    for (const [source, mark] of this.marks)
      if (slowest === null || mark < slowest.mark) slowest = { source, mark };
    this.slowestKnown = slowest;
    return slowest;
  }

  /** Up to where every source has been read, less the reorder window: what is at or before it can go on. */
  private cutoff(): bigint {
    const slowest = this.slowest();
    const upTo = slowest !== null && slowest.mark < this.newestNs ? slowest.mark : this.newestNs;
    return upTo - reorderWindowNs;
  }

  private hold(source: string, events: ProbeEvent[], out: PipelineOutput): void {
    const mark = this.marks.get(source);
    let newest = mark ?? 0n;
    for (const event of events) {
      if (event.ns < this.releasedNs) this.late(event, out);
      // Nearly in order already: walk back from the end to its place, after any event with the same timestamp,
      // so that the result is what a stable sort would give.
      let at = this.held.length;
      while (at > this.head && (this.held[at - 1] as ProbeEvent).ns > event.ns) at--;
      if (at === this.held.length) this.held.push(event);
      else this.held.splice(at, 0, event);
      if (event.ns > newest) newest = event.ns;
    }
    if (newest > this.newestNs) this.newestNs = newest;
    if (mark !== undefined && newest > mark && !this.byTicksOnly.has(source))
      this.setMark(source, newest);
    this.releaseReady(out);
    if (this.held.length - this.head > this.maxHeldEvents) this.overflow(out);
  }

  /** An event older than what already went on: counted, and told once per second of event time. */
  private late(event: ProbeEvent, out: PipelineOutput): void {
    this.counters.lateEvents++;
    this.lateUntold++;
    if (event.ns - this.lateToldNs < 1_000_000_000n && this.lateToldNs !== 0n) return;
    out.late = {
      count: this.lateUntold,
      message: `${this.lateUntold} event(s) read ${Math.round(millis(event.ns, this.releasedNs))} ms after newer ones had gone on (first: ${event.kind}); the handshakes they belong to may lack them (bpftrace starved of CPU? podwire doctor)`,
    };
    this.lateUntold = 0;
    this.lateToldNs = event.ns;
  }

  /** A source stopped answering without being reported down: go on rather than hold without end. */
  private overflow(out: PipelineOutput): void {
    const slowest = this.slowest();
    const behind = slowest !== null && slowest.mark < this.newestNs ? slowest.source : '';
    // Half of them go, so that this happens once per stall rather than once per event.
    const upToNs = (this.held[this.held.length - Math.ceil(this.maxHeldEvents / 2)] as ProbeEvent)
      .ns;
    // Marked before they go on: a handshake finished by what is released now may lack the program's events.
    this.correlator.eventsLost(
      `${behind || 'a probe program'} fell behind and its events were not waited for`,
      upToNs + reorderWindowNs,
    );
    this.release(upToNs, out);
    out.problems.push(
      `${this.maxHeldEvents} events waited for ${behind || 'a probe program'} to be read further; the oldest went on without it and handshakes in flight are reported incomplete (is its bpftrace stuck? podwire doctor)`,
    );
  }

  private releaseReady(out: PipelineOutput): void {
    const oldest = this.held[this.head];
    if (!oldest) return;
    const cutoff = this.cutoff();
    if (oldest.ns <= cutoff) this.release(cutoff, out);
  }

  private release(cutoff: bigint | null, out: PipelineOutput): void {
    while (this.head < this.held.length) {
      const event = this.held[this.head] as ProbeEvent;
      if (cutoff !== null && event.ns > cutoff) break;
      this.head++;
      this.counters.events++;
      if (event.ns > this.releasedNs) this.releasedNs = event.ns;
      this.correlator.pushInto(event, out.records);
    }
    // Drop what was released once it is most of the array, so that holding stays O(1) per event.
    if (this.head > 1024 && this.head * 2 > this.held.length) {
      this.held = this.held.slice(this.head);
      this.head = 0;
    }
  }

  /**
   * A probe program stopped (died, restarting), came back, or is gone for good (a runtime removed from the node).
   * While any is down the correlator is blind to part of the node: what is in flight, and what starts meanwhile,
   * cannot be reported complete. A program that `ticks` (answers tick requests) is waited for from the moment it is
   * up: nothing of it has been read yet.
   */
  probeState(
    source: string,
    state: 'up' | 'down' | 'gone',
    ticks: TickMode = false,
  ): PipelineOutput {
    // What arrived before the change is judged as it stood: released first, so replays agree with the live run.
    const out: PipelineOutput = { records: [], problems: [] };
    this.release(null, out);
    this.marks.delete(source);
    this.slowestKnown = undefined;
    this.down.delete(source);
    if (state === 'down') this.down.add(source);
    this.byTicksOnly.delete(source);
    if (state === 'up' && ticks) this.setMark(source, 0n);
    if (state === 'up' && ticks === 'batches') this.byTicksOnly.add(source);
    const down = [...this.down];
    this.correlator.blind =
      down.length > 0 ? `the probe program ${down.join(', ')} was down while it ran` : null;
    if (state !== 'up')
      this.correlator.eventsLost(
        `the probe program ${source} ${state === 'gone' ? 'was removed' : 'went down'} while it ran`,
      );
    return out;
  }

  /**
   * The sources that hold back the oldest waiting event: those not yet read a window past it. Only these need
   * asking for a tick; a busy source's own events say how far it has been read.
   */
  sourcesBehind(): string[] {
    const oldest = this.held[this.head];
    if (!oldest) return [];
    const behind: string[] = [];
    for (const [source, mark] of this.marks)
      if (mark < oldest.ns + reorderWindowNs) behind.push(source);
    return behind;
  }

  /**
   * What the pipeline holds now: events in the reorder window, values the assemblers wait to complete, handshakes
   * and teardowns in flight. Each is bounded (maxHeldEvents, a chunk count per thread, maxInFlight) and empty
   * after finish().
   */
  holds(): { events: number; partialValues: number; inFlight: number } {
    let partialValues = 0;
    for (const assembler of this.assemblers.values()) partialValues += assembler.pending;
    return {
      events: this.held.length - this.head,
      partialValues,
      inFlight: this.correlator.inFlight,
    };
  }

  /** Whether events wait in the reorder window (the live daemon drains them when input is idle). */
  get holding(): boolean {
    return this.head < this.held.length;
  }

  /** A runtime's CRI probes were attached after start: handshakes from now on end at the CRI return. */
  setCriProbes(on: boolean): void {
    this.correlator.criProbes = on;
  }

  /** The plugins whose I/O is probed in their own code from now on (null: every plugin's is seen). */
  setProbedPlugins(names: string[] | null): void {
    this.correlator.probedPlugins = names;
  }

  /**
   * Releases what the reorder window holds (the live daemon calls it when input has been idle), except what a
   * source that answers ticks has not been read past yet: an idle stream says nothing of a program behind.
   */
  drain(): PipelineOutput {
    const out: PipelineOutput = { records: [], problems: [] };
    if (this.marks.size === 0) this.release(null, out);
    else this.releaseReady(out);
    return out;
  }

  /** Up to where every source that answers ticks has been read (null when none does). */
  get readUpToNs(): bigint | null {
    return this.slowest()?.mark ?? null;
  }

  /**
   * End of input: everything held and every open handshake. What no tick confirmed (a program that went silent
   * without being reported down, or the last moments before a stop) may lack another program's events: the
   * handshakes it touches are reported incomplete rather than ok.
   */
  finish(): PipelineOutput {
    const out: PipelineOutput = { records: [], problems: [] };
    for (const assembler of this.assemblers.values()) {
      const { events, problems } = assembler.flush();
      out.problems.push(...problems);
      this.held.push(...events);
    }
    const readUpTo = this.readUpToNs;
    if (readUpTo !== null) {
      this.release(readUpTo, out);
      if (this.holding)
        this.correlator.eventsLost(
          'tracing stopped before every probe program confirmed its last events',
          this.newestNs + reorderWindowNs,
        );
    }
    this.release(null, out);
    out.records.push(...this.correlator.flush());
    return out;
  }
}
