// Replay at the recorded pace, on a fake clock: records as far apart as they ended, paused and sped up.
import { describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import { type PlayerClock, ReplayPlayer, recordedGaps } from '../../src/tui/player.js';
import { readRecording, replay } from '../correlate/recordings.js';

const recording = readRecording('ten-pods-plugin-uprobes.ndjson');
const records = replay(recording.header, recording.lines);
const gaps = recordedGaps(records, 2000);
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/** Timers that fire only when the test moves time on. */
class FakeClock implements PlayerClock {
  time = 0;
  private timers: { at: number; run: () => void; id: number }[] = [];
  private nextId = 0;

  now(): number {
    return this.time;
  }

  after(ms: number, run: () => void): () => void {
    const id = this.nextId++;
    this.timers.push({ at: this.time + ms, run, id });
    return () => {
      this.timers = this.timers.filter((timer) => timer.id !== id);
    };
  }

  advance(ms: number): void {
    const until = this.time + ms;
    for (;;) {
      const due = this.timers
        .filter((timer) => timer.at <= until)
        .sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((timer) => timer !== due);
      this.time = due.at;
      due.run();
    }
    this.time = until;
  }
}

function player(list: HandshakeRecord[] = records) {
  const clock = new FakeClock();
  const played: HandshakeRecord[] = [];
  let changes = 0;
  const replayer = new ReplayPlayer(list, (record) => played.push(record), {
    clock,
    changed: () => changes++,
  });
  return { clock, played, replayer, changes: () => changes };
}

describe('replay at the recorded pace (ten-pods-plugin-uprobes)', () => {
  it('waits between records as long as their ends were apart on the node', () => {
    const ends = records.map((r) => Date.parse(r.end));
    expect(gaps[0]).toBe(0);
    for (let i = 1; i < records.length; i++)
      expect(gaps[i]).toBe(Math.max(0, (ends[i] ?? 0) - (ends[i - 1] ?? 0)));
  });

  it('plays the first record at once, each next one when its gap has passed, all by the sum of the gaps', () => {
    const { clock, played, replayer, changes } = player();
    replayer.start();
    const atOnce = gaps.slice(1).findIndex((gap) => gap > 0) + 1;
    expect(played).toHaveLength(atOnce);
    // Just before the next gap has passed, nothing more; at it, the next record.
    clock.advance((gaps[atOnce] ?? 0) - 1);
    expect(played).toHaveLength(atOnce);
    clock.advance(1);
    expect(played.length).toBeGreaterThan(atOnce);
    clock.advance(sum(gaps) - clock.time - 1);
    expect(played.length).toBeLessThan(records.length);
    clock.advance(1);
    expect(played).toEqual(records);
    expect(replayer.done).toBe(true);
    expect(changes()).toBeGreaterThan(1);
  });

  it('space pauses: no record plays while paused, and the rest of the gap is waited after', () => {
    const { clock, played, replayer } = player();
    replayer.start();
    const before = played.length;
    const gap = gaps[before] ?? 0;
    clock.advance(gap / 2);
    replayer.togglePause();
    expect(replayer.paused).toBe(true);
    clock.advance(60_000);
    expect(played).toHaveLength(before);
    replayer.togglePause();
    clock.advance(gap / 2 - 1);
    expect(played).toHaveLength(before);
    clock.advance(1);
    expect(played.length).toBeGreaterThan(before);
  });

  it('+ doubles and - halves the speed, also for the wait in progress', () => {
    const fast = player();
    fast.replayer.faster();
    expect(fast.replayer.speed).toBe(2);
    fast.replayer.start();
    fast.clock.advance(sum(gaps) / 2);
    expect(fast.played).toEqual(records);

    const slow = player();
    slow.replayer.start();
    const before = slow.played.length;
    const gap = gaps[before] ?? 0;
    slow.clock.advance(gap / 2);
    // Half the gap is left; at half speed it takes twice as long.
    slow.replayer.slower();
    slow.clock.advance(gap - 1);
    expect(slow.played).toHaveLength(before);
    slow.clock.advance(1);
    expect(slow.played.length).toBeGreaterThan(before);
  });

  it('keeps the speed between 1/16 and 64 times', () => {
    const { replayer } = player();
    for (let i = 0; i < 20; i++) replayer.faster();
    expect(replayer.speed).toBe(64);
    for (let i = 0; i < 40; i++) replayer.slower();
    expect(replayer.speed).toBe(1 / 16);
  });

  it('cuts a long quiet stretch to 2 s', () => {
    const [a, b] = records as [HandshakeRecord, HandshakeRecord];
    const later = { ...b, end: new Date(Date.parse(a.end) + 3_600_000).toISOString() };
    const { clock, played, replayer } = player([a, later]);
    replayer.start();
    expect(played).toEqual([a]);
    clock.advance(1999);
    expect(played).toEqual([a]);
    clock.advance(1);
    expect(played).toEqual([a, later]);
  });

  it('plays nothing more once stopped (the user quit)', () => {
    const { clock, played, replayer } = player();
    replayer.start();
    const before = played.length;
    replayer.stop();
    clock.advance(60_000);
    expect(played).toHaveLength(before);
  });
});
