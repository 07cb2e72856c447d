// The probe-source interface (src/probes/source.ts): a hand-written source drives the real pipeline as the Tracer
// does, and the real bpftrace and tracefs sources keep the same contract (those as root).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { inspectContainerd } from '../../src/binaries/runtime.js';
import type { TickMode } from '../../src/correlate/pipeline.js';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import { parseBpftraceLine } from '../../src/decode/lines.js';
import { probeLine } from '../../src/decode/probe-lines.js';
import { beginProbe, probesDir } from '../../src/probes/program.js';
import { ProbeRunner } from '../../src/probes/runner.js';
import type { ProbeSource, ProbeSourceEvents } from '../../src/probes/source.js';
import { onPath } from '../../src/probes/tied.js';
import { UprobeEventsRunner } from '../../src/probes/uprobe-events.js';
import { pipelineFor } from '../../src/recording/replay.js';
import { printfData, readRecording, replay } from '../correlate/recordings.js';
import { isRoot } from '../lab/node.js';
import { until } from './running.js';

const tickLine = (ns: bigint) =>
  JSON.stringify({ type: 'printf', data: `${probeLine('tick', { ns, pid: 1, tid: 1 }, {})}\n` });

/**
 * A hand-written source, the few lines the interface asks for: attached soon after start(), it plays the lines it
 * was given when the test says (the pods start), and answers a tick with a tick line at `now`, which is after
 * every line it has.
 */
class PlayedSource implements ProbeSource {
  readonly restarts = 0;
  ticksAsked = 0;
  constructor(
    readonly name: string,
    readonly tickMode: TickMode,
    private readonly lines: string[],
    private readonly now: bigint,
    private readonly events: ProbeSourceEvents,
  ) {}
  start(): null {
    setImmediate(() => this.events.attached(1));
    return null;
  }
  play(): void {
    for (const raw of this.lines) this.events.line(raw);
  }
  tick(): void {
    this.ticksAsked++;
    this.events.line(tickLine(this.now));
  }
  async stop(): Promise<void> {}
}

describe('a probe source written by hand, as the Tracer uses sources', () => {
  it("gets a recording's lines to the pipeline, and the records out once the sources behind were asked for a tick", async () => {
    const { header, lines } = readRecording('ten-pods-ticks.ndjson');
    // The lines each program printed, less the ticks it answered then: here the ticks come from tick().
    const played = (src: string) =>
      lines.flatMap((line) =>
        line.src === src && line.raw && !printfData(line)?.startsWith('tick\t') ? [line.raw] : [],
      );
    // A second after the last line of the recording: every line was read by then.
    let now = 0n;
    for (const line of lines) {
      const ns = printfData(line)?.split('\t')[1];
      if (ns && /^\d+$/.test(ns) && BigInt(ns) > now) now = BigInt(ns);
    }
    now += 1_000_000_000n;

    const pipeline = pipelineFor(header);
    const records: HandshakeRecord[] = [];
    const sources = new Map<string, PlayedSource>();
    const events = (name: string): ProbeSourceEvents => ({
      line: (raw) => records.push(...pipeline.push(name, raw).records),
      attached: () =>
        records.push(
          ...pipeline.probeState(name, 'up', sources.get(name)?.tickMode ?? false).records,
        ),
      died: () => records.push(...pipeline.probeState(name, 'down').records),
    });
    for (const [name, tickMode] of [
      ['kernel', 'batches'],
      ['cri:/usr/bin/containerd', true],
    ] as const) {
      sources.set(name, new PlayedSource(name, tickMode, played(name), now, events(name)));
      pipeline.probeState(name, 'down');
    }
    for (const source of sources.values()) expect(source.start()).toBeNull();
    await new Promise((resolve) => setImmediate(resolve));
    for (const source of sources.values()) source.play();

    // Every line is in, and the kernel program, whose events alone say nothing of how far it was read, holds
    // them all back until it is asked.
    expect(pipeline.counters.lines).toBe(
      played('kernel').length + played('cri:/usr/bin/containerd').length,
    );
    expect(records).toEqual([]);
    expect(pipeline.sourcesBehind()).toEqual(['kernel']);
    // The Tracer's rounds: the sources behind the oldest waiting event are asked, until nothing waits.
    for (let round = 0; round < 5 && pipeline.holding; round++)
      for (const name of pipeline.sourcesBehind()) sources.get(name)?.tick();
    expect(pipeline.holding).toBe(false);
    expect(sources.get('kernel')?.ticksAsked).toBe(1);
    const beforeFinish = records.length;
    expect(beforeFinish).toBeGreaterThan(0);
    records.push(...pipeline.finish().records);
    await Promise.all([...sources.values()].map((source) => source.stop()));

    const handshakes = records.filter((record) => record.kind === 'handshake');
    expect(handshakes).toHaveLength(10);
    expect(handshakes.map((record) => record.outcome)).toEqual(
      replay(header, lines)
        .filter((record) => record.kind === 'handshake')
        .map((record) => record.outcome),
    );
  });
});

const containerd = '/usr/bin/containerd';
const why = !isRoot
  ? 'needs root: it runs bpftrace and writes tracefs'
  : !onPath('bpftrace')
    ? 'needs bpftrace: npm run setup installs it'
    : !existsSync(containerd)
      ? `needs ${containerd}: npm run setup installs it`
      : '';

describe.skipIf(why !== '')(
  `the real sources keep the contract${why ? ` (skipped: ${why})` : ''}`,
  () => {
    const stops: (() => Promise<void>)[] = [];
    afterAll(async () => {
      for (const stop of stops) await stop();
    });

    /**
     * Starts the source `make` builds: nothing is said from inside start(), then it says it is attached; a tick
     * asked comes back timed at or after the asking; after stop() it says nothing more.
     */
    async function keepsTheContract(
      make: (events: ProbeSourceEvents) => ProbeSource,
      tickMode: TickMode,
    ): Promise<void> {
      const lines: string[] = [];
      const said: string[] = [];
      const source = make({
        line: (raw) => lines.push(raw),
        attached: (probes) => said.push(`attached ${probes}`),
        died: (message) => said.push(`died: ${message}`),
      });
      stops.push(() => source.stop());
      expect(source.start()).toBeNull();
      expect(said).toEqual([]);
      await until(`${source.name} attached`, () => said.length > 0, 30_000);
      expect(said).toEqual([expect.stringMatching(/^attached [1-9]\d*$/)]);
      expect(source.tickMode).toBe(tickMode);
      expect(source.restarts).toBe(0);

      const ticks = () =>
        lines.flatMap((raw) => {
          const parsed = parseBpftraceLine(raw);
          return parsed.type === 'probe' && parsed.line.tag === 'tick' ? [parsed.line.ns] : [];
        });
      const asked = process.hrtime.bigint();
      source.tick();
      await until(`a tick from ${source.name}`, () => ticks().some((ns) => ns >= asked));

      await source.stop();
      const after = lines.length;
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(lines).toHaveLength(after);
      expect(said).toHaveLength(1);
    }

    it('the bpftrace source (a program with tick.bt)', { timeout: 60_000 }, async () => {
      const tick = readFileSync(join(probesDir(), 'tick.bt'), 'utf8').replaceAll(
        '{{DAEMON_PID}}',
        String(process.pid),
      );
      await keepsTheContract(
        (events) => new ProbeRunner('contract-test', `${tick}\n${beginProbe}\n`, events),
        'batches',
      );
    });

    it("containerd's CRI source (tracefs uprobe events)", { timeout: 60_000 }, async () => {
      const inspection = await inspectContainerd(containerd);
      if ('error' in inspection) throw new Error(inspection.error);
      await keepsTheContract(
        (events) => new UprobeEventsRunner('cri:contract-test', inspection, events, 95),
        true,
      );
    });
  },
);
