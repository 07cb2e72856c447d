// One path from bpftrace's raw lines to records, shared by live tracing and replay so that both give the same.
import { Correlator, type CorrelatorOptions } from './correlate/correlator.js';
import type { HandshakeRecord } from './correlate/record.js';
import type { ProbeEvent } from './events.js';
import { type AssembleResult, Assembler } from './probes/assemble.js';
import { parseBpftraceLine } from './probes/lines.js';

export interface PipelineCounters {
  lines: number;
  events: number;
  lostEvents: number;
  malformedLines: number;
  assemblyProblems: number;
}

export interface PipelineOutput {
  records: HandshakeRecord[];
  /** One-line descriptions of input podwire could not use (malformed lines, lost events). */
  problems: string[];
  attached?: { source: string; probes: number };
  lost?: number;
}

/** Events from different CPUs can arrive out of order by a little: hold each this long (event time) and sort. */
const reorderWindowNs = 250_000_000n;

export class Pipeline {
  private assemblers = new Map<string, Assembler>();
  /** Events waiting for the reorder window, sorted by time; those before `head` are already released. */
  private held: ProbeEvent[] = [];
  private head = 0;
  private newestNs = 0n;
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
  };

  constructor(options: CorrelatorOptions) {
    this.correlator = new Correlator(options);
  }

  /** One raw line of one bpftrace process (`source` names it: "kernel", "cri:/usr/bin/containerd"). */
  push(source: string, raw: string): PipelineOutput {
    const out: PipelineOutput = { records: [], problems: [] };
    this.counters.lines++;
    const parsed = parseBpftraceLine(raw);
    switch (parsed.type) {
      case 'probe': {
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
        if (assembled.events.length > 0) this.hold(assembled.events, out);
        break;
      }
      case 'attached':
        out.attached = { source, probes: parsed.probes };
        break;
      case 'lost':
        this.counters.lostEvents += parsed.count;
        out.lost = parsed.count;
        // The lost events were among those held or about to come: every handshake in flight up to a window
        // past the newest event seen may miss one.
        this.release(null, out);
        this.correlator.eventsLost(this.newestNs + reorderWindowNs);
        break;
      case 'malformed':
        this.counters.malformedLines++;
        out.problems.push(`unreadable line from bpftrace (${source}): ${parsed.why}`);
        break;
      case 'other':
        break;
    }
    return out;
  }

  private hold(events: ProbeEvent[], out: PipelineOutput): void {
    for (const event of events) {
      // Nearly in order already: walk back from the end to its place, after any event with the same timestamp,
      // so that the result is what a stable sort would give.
      let at = this.held.length;
      while (at > this.head && (this.held[at - 1] as ProbeEvent).ns > event.ns) at--;
      if (at === this.held.length) this.held.push(event);
      else this.held.splice(at, 0, event);
      if (event.ns > this.newestNs) this.newestNs = event.ns;
    }
    const oldest = this.held[this.head];
    if (oldest && oldest.ns <= this.newestNs - reorderWindowNs)
      this.release(this.newestNs - reorderWindowNs, out);
  }

  private release(cutoff: bigint | null, out: PipelineOutput): void {
    while (this.head < this.held.length) {
      const event = this.held[this.head] as ProbeEvent;
      if (cutoff !== null && event.ns > cutoff) break;
      this.head++;
      this.counters.events++;
      this.correlator.pushInto(event, out.records);
    }
    // Drop what was released once it is most of the array, so that holding stays O(1) per event.
    if (this.head > 1024 && this.head * 2 > this.held.length) {
      this.held = this.held.slice(this.head);
      this.head = 0;
    }
  }

  /**
   * A probe program stopped (died, restarting) or came back. While any is down the correlator is blind to part
   * of the node: what is in flight, and what starts meanwhile, cannot be reported complete.
   */
  probeState(source: string, up: boolean): PipelineOutput {
    // What arrived before the change is judged as it stood: released first, so replays agree with the live run.
    const out: PipelineOutput = { records: [], problems: [] };
    this.release(null, out);
    if (up) this.down.delete(source);
    else this.down.add(source);
    this.correlator.blind = this.down.size > 0;
    if (!up) this.correlator.eventsLost();
    return out;
  }

  /** Whether events wait in the reorder window (the live daemon drains them when input is idle). */
  get holding(): boolean {
    return this.head < this.held.length;
  }

  /** A runtime's CRI probes were attached after start: handshakes from now on end at the CRI return. */
  setCriProbes(on: boolean): void {
    this.correlator.criProbes = on;
  }

  /** Releases what the reorder window holds (the live daemon calls it when input has been idle). */
  drain(): PipelineOutput {
    const out: PipelineOutput = { records: [], problems: [] };
    this.release(null, out);
    return out;
  }

  /** End of input: everything held and every open handshake. */
  finish(): PipelineOutput {
    const out: PipelineOutput = { records: [], problems: [] };
    for (const assembler of this.assemblers.values()) {
      const { events, problems } = assembler.flush();
      out.problems.push(...problems);
      this.held.push(...events);
    }
    this.release(null, out);
    out.records.push(...this.correlator.flush());
    return out;
  }
}
