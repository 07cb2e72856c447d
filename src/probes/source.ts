// The one shape of a probe source (a bpftrace program, a runtime's tracefs uprobe events): the Tracer holds a list
// of these and never asks which kind it holds, so a new source is a new file.
import type { TickMode } from '../correlate/pipeline.js';
import type { StatusEvent } from '../events.js';
import type { Janitor } from './janitor.js';

/**
 * What a source tells whoever started it. None of these is ever called from inside start(): they come later, from
 * the event loop, so a caller can start its sources and get ready for their lines in the same turn.
 */
export interface ProbeSourceEvents {
  /** One raw line, as the pipeline reads it (a bpftrace JSON line, a "Lost N events" line). */
  line(raw: string): void;
  /** Every probe is in place and read, at the start and again after each restart. */
  attached(probes: number): void;
  /** It stopped reading: why, as the user reads it (saying when it comes back), and in how long (null: never). */
  died(message: string, restartInMs: number | null): void;
}

/** A line the ready status adds about one source: its text, and the fields it adds to the status. */
export interface ReadyNote {
  text: string;
  fields: Record<string, string>;
}

/** Started once, asked for ticks any time, stopped once; what it reads goes to its ProbeSourceEvents. */
export interface ProbeSource {
  /** What its lines are recorded and replayed as ("kernel", "cri:/usr/bin/containerd"). */
  readonly name: string;
  /** How its ticks bound what is still unread (see TickMode); read each time it says it is attached. */
  readonly tickMode: TickMode;
  /**
   * How often its probes were placed again after it died, as the probe-restarted and probe-failed statuses count
   * it (a reader started again over probes that stayed does not count).
   */
  readonly restarts: number;
  /** Places its probes and begins reading them; returns why it could not, in one line, or null. */
  start(): string | null;
  /** Asks for a tick line, which comes once everything before this call has been read (a no-op if it cannot). */
  tick(): void;
  /**
   * Stops reading and removes its probes; its events stop. Given the daemon's janitor, it returns once reading has
   * ended and leaves to the janitor (or to the kernel, as a child exits) what the kernel is slow to let go of.
   */
  stop(janitor?: Janitor | null): Promise<void>;
  /** What the ready status should say of it, if anything. */
  readyNote?(): ReadyNote | null;
}

/**
 * A container runtime podwire probes: where it runs on this node and how to build the source for one of its
 * binaries. Another runtime is another object like this, in a file of its own (containerd-source.ts).
 */
export interface RuntimeProbes {
  /** As records, recordings and status messages name it ("containerd"). */
  readonly name: string;
  /** The binaries it runs from on this node now. */
  running(): string[];
  /**
   * Inspects `binary` and builds its source named `name`, not yet started; says what it found through `say`, and
   * returns null when it cannot be probed (said too). `index` tells this daemon's sources apart where they need
   * names of their own on the node (tracefs event groups).
   */
  source(
    binary: string,
    name: string,
    index: number,
    events: ProbeSourceEvents,
    say: (status: StatusEvent) => void,
  ): Promise<ProbeSource | null>;
}
