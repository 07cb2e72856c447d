// A bpftrace that falls behind the CRI reader (starved of CPU on a busy node): its lines reach the daemon late,
// after the RunPodSandbox return that ends the handshake. The real recording is replayed with the kernel
// program's lines delivered later than they were, each source's lines kept in their own order.

import { describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import { probeLine } from '../../src/decode/probe-lines.js';
import { pipelineFor, replayLine } from '../../src/recording/replay.js';
import {
  bridgeHandshakeSteps,
  printfData,
  type RecordingLine,
  readRecording,
  recorded,
  replay,
} from './recordings.js';

const recording = readRecording('ten-pods-ticks.ndjson');

/** A probe line's timestamp (its second field), or null for lines without one. */
function lineNs(line: RecordingLine): bigint | null {
  const ns = printfData(line)?.split('\t')[1];
  return ns && /^\d+$/.test(ns) ? BigInt(ns) : null;
}

/**
 * The lines as the daemon would read them if `source`'s program were `lagNs` behind the others: each line
 * arrives at its event time, plus the lag for that source; lines without a time arrive with the line before them
 * in their source. Each source's own order is kept, as a pipe keeps it.
 */
function delayed(lines: RecordingLine[], source: string, lagNs: bigint): RecordingLine[] {
  const queues = { late: [] as [bigint, RecordingLine][], others: [] as [bigint, RecordingLine][] };
  const last = { late: 0n, others: 0n };
  for (const line of lines) {
    const queue = line.src === source ? 'late' : 'others';
    const ns = lineNs(line);
    if (ns !== null && ns + (queue === 'late' ? lagNs : 0n) > last[queue])
      last[queue] = ns + (queue === 'late' ? lagNs : 0n);
    queues[queue].push([last[queue], line]);
  }
  const out: RecordingLine[] = [];
  let [a, b] = [0, 0];
  while (a < queues.late.length || b < queues.others.length) {
    const late = queues.late[a];
    const other = queues.others[b];
    if (late && (!other || late[0] < other[0])) {
      out.push(late[1]);
      a++;
    } else if (other) {
      out.push(other[1]);
      b++;
    }
  }
  return out;
}

const okMissingSteps = (records: HandshakeRecord[]) =>
  records.filter(
    (r) =>
      r.kind === 'handshake' &&
      r.outcome === 'ok' &&
      !bridgeHandshakeSteps.every((step) => r.phases.some((p) => p.name === step)),
  );

/** What a user compares between two runs: per pod, its outcome and the phases it names. */
const summary = (records: HandshakeRecord[]) =>
  records
    .map((r) => `${r.kind} ${r.pod.name} ${r.outcome} ${r.phases.map((p) => p.name).join(',')}`)
    .sort();

describe('a bpftrace that falls behind the CRI reader (real recording with ticks, kernel lines delivered late)', () => {
  const asRecorded = replay(recording.header, recording.lines);
  const lag = 2_000_000_000n;

  it('the recording itself: ten ok handshakes with every step, ten teardowns', () => {
    const handshakes = asRecorded.filter((r) => r.kind === 'handshake');
    expect(handshakes).toHaveLength(10);
    for (const record of handshakes) {
      expect(record.outcome).toBe('ok');
      expect(record.phases.map((p) => p.name)).toEqual(
        expect.arrayContaining(['cri RunPodSandbox', ...bridgeHandshakeSteps]),
      );
    }
    expect(asRecorded.filter((r) => r.kind === 'teardown')).toHaveLength(10);
  });

  it('gives the same records when the kernel lines come 2 s late: each event waits for the program behind', () => {
    const lines = delayed(recording.lines, 'kernel', lag);
    expect(lines).not.toEqual(recording.lines);
    expect(summary(replay(recording.header, lines))).toEqual(summary(asRecorded));
  });

  it('asks for ticks only from the program behind: the kernel program, while its lines come 2 s late', () => {
    const pipeline = pipelineFor(recording.header);
    const asked = new Map<string, number>();
    for (const line of delayed(recording.lines, 'kernel', lag)) {
      replayLine(pipeline, recorded(line));
      const behind = pipeline.sourcesBehind().join(' ');
      asked.set(behind, (asked.get(behind) ?? 0) + 1);
    }
    const onlyKernel = asked.get('kernel') ?? 0;
    const withCri = [...asked]
      .filter(([key]) => key.includes('cri:'))
      .reduce((n, [, c]) => n + c, 0);
    expect(onlyKernel).toBeGreaterThan(withCri);
  });

  it('is what the ticks do: without them, the same delay gives handshakes missing steps (the hole they close)', () => {
    // As an older podwire recorded it: no tick lines, and no program said it answers them.
    const untick = (line: RecordingLine) => !printfData(line)?.startsWith('tick\t');
    const older = recording.lines.filter(untick).map(({ ticks, ...line }) => line);
    const lines = delayed(older, 'kernel', lag);
    expect(okMissingSteps(replay(recording.header, lines)).length).toBeGreaterThan(0);
  });

  it('counts and tells the events that came after newer ones had gone on (there, not with the ticks)', () => {
    const untick = (line: RecordingLine) => !printfData(line)?.startsWith('tick\t');
    const older = recording.lines.filter(untick).map(({ ticks, ...line }) => line);
    const run = (lines: RecordingLine[]) => {
      const pipeline = pipelineFor(recording.header);
      const problems: string[] = [];
      for (const line of lines) {
        const out = replayLine(pipeline, recorded(line));
        if (out?.late) problems.push(out.late.message);
      }
      return { late: pipeline.counters.lateEvents, problems };
    };
    const withoutTicks = run(delayed(older, 'kernel', lag));
    expect(withoutTicks.late).toBeGreaterThan(0);
    expect(withoutTicks.problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /^\d+ event\(s\) read \d+ ms after newer ones had gone on \(first: \w+\); the handshakes/,
        ),
      ]),
    );
    // At most one line per second of event time, however many came late.
    const told = withoutTicks.problems.filter((p) => p.includes('after newer ones had gone on'));
    expect(told.length).toBeLessThan(withoutTicks.late);
    const withTicks = run(delayed(recording.lines, 'kernel', lag));
    expect(withTicks.late).toBe(0);
    expect(run(recording.lines).late).toBe(0);
  });

  it('events lost while the kernel lines come 2 s late: the handshakes it may touch are incomplete, none ok without steps', () => {
    // bpftrace says so on stderr, which the daemon reads at once: the line comes ahead of the output it follows.
    const lines = delayed(recording.lines, 'kernel', lag);
    const half = Math.floor(lines.length / 2);
    const withLoss = [
      ...lines.slice(0, half),
      { src: 'kernel', raw: 'Lost 9 events' },
      ...lines.slice(half),
    ];
    const records = replay(recording.header, withLoss);
    expect(okMissingSteps(records)).toEqual([]);
    expect(records.filter((r) => r.outcome === 'incomplete').length).toBeGreaterThan(0);
    expect(records.filter((r) => r.kind === 'handshake')).toHaveLength(10);
  });

  it('gives the same records when the CRI reader is the one behind', () => {
    const cri = recording.lines.find((line) => line.src?.startsWith('cri:'))?.src as string;
    const lines = delayed(recording.lines, cri, lag);
    expect(summary(replay(recording.header, lines))).toEqual(summary(asRecorded));
  });
});

/** The recording replayed through a pipeline that holds at most `limit` events. */
function replayHolding(lines: RecordingLine[], limit: number) {
  const pipeline = pipelineFor(recording.header, limit);
  const records: HandshakeRecord[] = [];
  const problems: string[] = [];
  for (const line of lines) {
    const out = replayLine(pipeline, recorded(line));
    records.push(...(out?.records ?? []));
    problems.push(...(out?.problems ?? []));
  }
  const whileRunning = records.length;
  records.push(...pipeline.finish().records);
  return { records, problems, whileRunning };
}

describe('a probe program that goes silent without dying (real recording, its lines cut off halfway)', () => {
  // Hand-edited from the real recording: from the middle on, one source prints nothing, as if it hung.
  const half = Math.floor(recording.lines.length / 2);
  const silent = (source: string) =>
    recording.lines.filter((line, at) => at < half || line.src !== source);
  const cri = recording.lines.find((line) => line.src?.startsWith('cri:'))?.src as string;

  it('kernel silent: the handshakes it leaves unconfirmed are incomplete at the end, never ok', () => {
    const { records, problems } = replayHolding(silent('kernel'), 100_000);
    expect(problems).toEqual([]);
    expect(okMissingSteps(records)).toEqual([]);
    expect(
      records.filter((r) => r.kind === 'handshake' && r.outcome === 'incomplete').length,
    ).toBeGreaterThan(0);
  });

  it('CRI reader silent: at most the limit waits; it says which program is behind, and records still come', () => {
    const limit = 500;
    const { records, problems, whileRunning } = replayHolding(silent(cri), limit);
    expect(problems.length).toBeGreaterThan(0);
    expect(problems[0]).toBe(
      `${limit} events waited for ${cri} to be read further; the oldest went on without it and handshakes in flight are reported incomplete (is its bpftrace stuck? podwire doctor)`,
    );
    expect(whileRunning).toBeGreaterThan(0);
    expect(okMissingSteps(records)).toEqual([]);
  });

  it('the same recording whole never comes near that limit', () => {
    expect(replayHolding(recording.lines, 500).problems).toEqual([]);
  });
});

const tickLine = (ns: bigint): RecordingLine => ({
  src: 'kernel',
  raw: JSON.stringify({
    type: 'printf',
    data: `${probeLine('tick', { ns, pid: 0, tid: 0 }, {})}\n`,
  }),
});

/**
 * The kernel program's lines as bpftrace prints them after a starvation: the CPU that ran host-local is read a
 * second after the others (lines are delivered at event time, host-local's a second later), and ticks are what
 * probes/tick.bt gives: each says how far every CPU has been read, so no line older than a tick comes after it.
 * The recorded kernel ticks (of the older kind) are left out and these put in their place, one per 250 ms.
 */
function cpuReadLate(lines: RecordingLine[], ticks: true | 'batches'): RecordingLine[] {
  const hostLocal = new Set(
    lines
      .map((line) => printfData(line)?.split('\t'))
      .filter((f) => f?.[0] === 'cni_exec' && f[6]?.endsWith('/host-local\n'))
      .map((f) => f?.[2]),
  );
  const late = (line: RecordingLine) =>
    line.src === 'kernel' && hostLocal.has(printfData(line)?.split('\t')[2]);
  const keyed: { key: bigint; line: RecordingLine }[] = [];
  const lastKey = new Map<string | undefined, bigint>();
  for (const line of lines) {
    if (line.src === 'kernel' && printfData(line)?.startsWith('tick\t')) continue;
    const ns = lineNs(line);
    const key =
      ns === null ? (lastKey.get(line.src) ?? 0n) : ns + (late(line) ? 1_000_000_000n : 0n);
    lastKey.set(line.src, key);
    const edited = line.src === 'kernel' && line.probe === 'up' ? { ...line, ticks } : line;
    keyed.push({ key, line: edited as RecordingLine });
  }
  const delivered = keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  // The oldest kernel event not yet delivered, after each point: a tick may say no more than that.
  const unread: bigint[] = new Array(delivered.length + 1).fill(-1n);
  for (let at = delivered.length - 1; at >= 0; at--) {
    const { line } = delivered[at] as { line: RecordingLine };
    const ns = line.src === 'kernel' ? lineNs(line) : null;
    const after = unread[at + 1] as bigint;
    unread[at] = ns === null ? after : after === -1n || ns < after ? ns : after;
  }
  const out: RecordingLine[] = [];
  let nextTick = 0n;
  for (const [at, { key, line }] of delivered.entries()) {
    out.push(line);
    if (key < nextTick) continue;
    nextTick = key + 250_000_000n;
    const pending = unread[at + 1] as bigint;
    const tick = pending === -1n || pending > key ? key : pending - 1n;
    out.push(tickLine(tick));
  }
  // The stop's last tick: everything has been read.
  out.push(tickLine(delivered.at(-1)?.key ?? 0n));
  return out;
}

describe("bpftrace printing one CPU's buffer before another's older lines (real recording, host-local's read a second late)", () => {
  const asRecorded = replay(recording.header, recording.lines);

  it("with ticks that bound every CPU (tick.bt) and events that do not move the kernel program's mark: the same records", () => {
    const lines = cpuReadLate(recording.lines, 'batches');
    expect(summary(replay(recording.header, lines))).toEqual(summary(asRecorded));
  });

  it('is what that does: when the kernel lines move its mark as before, the same stream gives ok handshakes without IPAM', () => {
    const records = replay(recording.header, cpuReadLate(recording.lines, true));
    const missing = okMissingSteps(records);
    expect(missing.length).toBeGreaterThan(0);
    expect(missing.every((r) => !r.phases.some((p) => p.name === 'ipam host-local'))).toBe(true);
  });
});
