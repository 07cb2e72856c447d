// Replay at the recorded pace: records appear as far apart as they ended on the node, paused and sped up at will.
import type { HandshakeRecord } from '../correlate/record.js';

/** Time and timers, injectable so that tests drive the pace with a fake clock. */
export interface PlayerClock {
  now(): number;
  /** Calls `run` after `ms`; the returned function cancels it. */
  after(ms: number, run: () => void): () => void;
}

export const realClock: PlayerClock = {
  now: () => performance.now(),
  after: (ms, run) => {
    const timer = setTimeout(run, ms);
    return () => clearTimeout(timer);
  },
};

export interface PlayerOptions {
  clock?: PlayerClock;
  /** A recording with a quiet hour in it should not make the user wait an hour: gaps are cut to this. */
  maxGapMs?: number;
  /** Called after every change the header shows (a record played, paused, speed). */
  changed?: () => void;
  /** The speed it starts at (1: the recorded pace), kept within what + and - reach. */
  speed?: number;
}

const minSpeed = 1 / 16;
const maxSpeed = 64;

/** The recorded gap before each record: the time between its end and the previous record's end, capped. */
export function recordedGaps(records: HandshakeRecord[], maxGapMs: number): number[] {
  let previous: number | null = null;
  return records.map((record) => {
    const end = Date.parse(record.end);
    const gap = previous === null || Number.isNaN(end) ? 0 : end - previous;
    if (!Number.isNaN(end)) previous = end;
    return Math.min(maxGapMs, Math.max(0, gap));
  });
}

export class ReplayPlayer {
  private readonly clock: PlayerClock;
  private readonly gaps: number[];
  private next = 0;
  private cancel: (() => void) | null = null;
  /** Recorded milliseconds still to wait before the next record, as of `waitingSince`. */
  private waitRecordedMs = 0;
  private waitingSince = 0;
  private started = false;
  speed = 1;
  paused = false;

  constructor(
    private readonly records: HandshakeRecord[],
    private readonly play: (record: HandshakeRecord) => void,
    private readonly options: PlayerOptions = {},
  ) {
    this.clock = options.clock ?? realClock;
    this.gaps = recordedGaps(records, options.maxGapMs ?? 2000);
    this.speed = Math.min(maxSpeed, Math.max(minSpeed, options.speed ?? 1));
  }

  get played(): number {
    return this.next;
  }

  get total(): number {
    return this.records.length;
  }

  get done(): boolean {
    return this.next >= this.records.length;
  }

  /** The first record plays at once; the others follow at the recorded pace. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.waitRecordedMs = 0;
    this.waitingSince = this.clock.now();
    if (!this.paused) this.due();
  }

  togglePause(): void {
    if (this.paused) {
      this.paused = false;
      this.waitingSince = this.clock.now();
      if (this.started) this.schedule();
    } else {
      this.waitRecordedMs = this.recordedLeft();
      this.unschedule();
      this.paused = true;
    }
    this.options.changed?.();
  }

  faster(): void {
    this.setSpeed(this.speed * 2);
  }

  slower(): void {
    this.setSpeed(this.speed / 2);
  }

  stop(): void {
    this.unschedule();
    this.next = this.records.length;
  }

  /** A new speed applies to the wait in progress too: what is left of it is rescaled. */
  private setSpeed(speed: number): void {
    const clamped = Math.min(maxSpeed, Math.max(minSpeed, speed));
    if (clamped === this.speed) return;
    if (!this.paused && this.cancel) {
      this.waitRecordedMs = this.recordedLeft();
      this.waitingSince = this.clock.now();
      this.speed = clamped;
      this.schedule();
    } else this.speed = clamped;
    this.options.changed?.();
  }

  private recordedLeft(): number {
    const elapsed = (this.clock.now() - this.waitingSince) * this.speed;
    return Math.max(0, this.waitRecordedMs - elapsed);
  }

  private unschedule(): void {
    this.cancel?.();
    this.cancel = null;
  }

  private schedule(): void {
    this.unschedule();
    if (this.done) return;
    this.cancel = this.clock.after(this.waitRecordedMs / this.speed, () => {
      this.cancel = null;
      this.due();
    });
  }

  /** Plays the record that is due, and every one after it that ended at the same moment. */
  private due(): void {
    do {
      const record = this.records[this.next];
      this.next++;
      if (record) this.play(record);
    } while (!this.done && (this.gaps[this.next] ?? 0) === 0);
    this.waitRecordedMs = this.gaps[this.next] ?? 0;
    this.waitingSince = this.clock.now();
    this.options.changed?.();
    if (!this.paused) this.schedule();
  }
}
