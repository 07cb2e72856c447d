// The folded waterfall of real records: every step of a handshake on one screen, interfaces by name, quick at 1,000 pods.
import { readdirSync } from 'node:fs';
import { PassThrough, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { HandshakeRecord, PhaseRecord } from '../../src/correlate/record.js';
import { phaseDetails } from '../../src/tui/details.js';
import { HeaderState } from '../../src/tui/header.js';
import { RecordStore, Timeline } from '../../src/tui/model.js';
import { isLookup, phaseTree, timeNs } from '../../src/tui/phases.js';
import { interfaceNames, phaseTarget, recordSteps } from '../../src/tui/steps.js';
import { paneLayout, TimelineView } from '../../src/tui/view.js';
import { waterfallLines, waterfallRows } from '../../src/tui/waterfall.js';
import { readRecording, replay } from '../correlate/recordings.js';

const fixtures = readdirSync(
  fileURLToPath(new URL('../fixtures/recordings', import.meta.url)),
).filter((name) => name.endsWith('.ndjson'));
const recorded = fixtures.map((name) => {
  const { header, lines } = readRecording(name);
  return { name, records: replay(header, lines) };
});
const everyRecord = recorded.flatMap(({ records }) => records);
const handshakes = everyRecord.filter((record) => record.kind === 'handshake');
const tenPods = recorded.find(({ name }) => name === 'ten-pods-plugin-uprobes.ndjson');
const firstHandshake = tenPods?.records.find((r) => r.kind === 'handshake') as HandshakeRecord;
const text = (runs: { text: string }[]) => runs.map((run) => run.text).join('');

/** The steps a reader expects as rows: every phase but lookups and the calls that only serve a step. */
const expectedSteps = (record: HandshakeRecord) =>
  record.phases
    .filter((p) => !isLookup(p) && p.name !== 'link up' && !p.name.startsWith('rtnetlink '))
    .map((p) => p.name);

const folded = (record: HandshakeRecord) =>
  waterfallRows(record, { barWidth: 60, hideLookups: true });

describe('the folded waterfall of every recorded handshake', () => {
  it('has a row for every step, each once, the lookups and the calls serving a step left out', () => {
    expect(handshakes.length).toBeGreaterThanOrEqual(40);
    for (const record of handshakes) {
      const { rows, hiddenLookups, foldedCalls } = folded(record);
      const names = rows.map((row) => row.phase.name);
      expect(names.sort(), podOf(record)).toEqual(expectedSteps(record).sort());
      for (const name of [
        'cri RunPodSandbox',
        'netns create',
        'cni ADD loopback',
        'veth create',
        'bridge attach',
        'addr add',
        'route add',
        'sandbox start',
      ])
        if (record.outcome === 'ok') expect(names, podOf(record)).toContain(name);
      expect(names.some((name) => /^cni ADD (?!loopback)/.test(name))).toBe(true);
      expect(names.some((name) => name.startsWith('ipam '))).toBe(true);
      const lookups = record.phases.filter((p) => isLookup(p) && !p.error).length;
      expect(hiddenLookups).toBe(lookups);
      expect(rows.length + hiddenLookups + foldedCalls).toBe(record.phases.length);
    }
  });

  it('fits the waterfall pane at 120×36 and 80×24 (the legend gives way at 80×24 if it must)', () => {
    const inner = (cols: number, rows: number) => paneLayout(cols, rows).waterfall.height - 2;
    for (const record of handshakes.filter((r) => r.outcome === 'ok')) {
      const { rows } = folded(record);
      expect(rows.length + 1, podOf(record)).toBeLessThanOrEqual(inner(120, 36));
      expect(rows.length, podOf(record)).toBeLessThanOrEqual(inner(80, 24));
    }
    // Room at 120×36 for the containers' rows to come.
    expect(inner(120, 36) - 1 - folded(firstHandshake).rows.length).toBeGreaterThanOrEqual(3);
  });

  it('orders rows as the steps happened: siblings by start, each after the step it ran inside', () => {
    for (const record of handshakes) {
      const { rows } = folded(record);
      rows.forEach((row, index) => {
        const earlier = rows.slice(0, index).filter((r) => r.phase.parentId === row.phase.parentId);
        const previous = earlier[earlier.length - 1];
        if (previous)
          expect(timeNs(previous.phase.start) ?? 0n).toBeLessThanOrEqual(
            timeNs(row.phase.start) ?? 0n,
          );
        if (row.phase.parentId !== null)
          expect(rows.findIndex((r) => r.phase.id === row.phase.parentId)).toBeLessThan(index);
      });
    }
  });

  it('names interfaces, never an index, folded or not', () => {
    for (const record of everyRecord)
      for (const hideLookups of [true, false])
        for (const row of waterfallRows(record, { barWidth: 40, hideLookups }).rows)
          expect(row.label, podOf(record)).not.toMatch(/ifindex/);
    for (const record of handshakes.filter((r) => r.outcome === 'ok')) {
      const { rows } = folded(record);
      const label = (name: string) => rows.find((row) => row.phase.name === name)?.label.trim();
      const pod = record.podInterface ?? '';
      expect(label('veth create')).toBe(`veth create ${pod}/${record.hostVeth}`);
      expect(label('bridge attach')).toBe(`bridge attach ${record.hostVeth} to ${record.bridge}`);
      expect(label('addr add')).toBe(`addr add ${pod} ${record.podIP}`);
      expect(label('route add')).toMatch(new RegExp(`^route add ${pod} 0\\.0\\.0\\.0/0 via `));
      expect(label('cni ADD loopback')).toBe('cni ADD loopback lo');
    }
  });

  it('folds each call into a step that acts on the same interface, or into the plugin that made it', () => {
    for (const record of handshakes) {
      const names = interfaceNames(record);
      const { steps } = recordSteps(record, phaseTree(record), true);
      for (const step of steps)
        for (const call of step.folded) {
          expect(isLookup(call)).toBe(false);
          expect(call.error ?? '').toBe('');
          if (step.phase.kind === 'cni') {
            expect(call.parentId).toBe(step.phase.id);
            continue;
          }
          expect(call.parentId).toBe(step.phase.parentId);
          const interfaces = (phase: PhaseRecord) =>
            (phaseTarget(phase, names) ?? '').split(/[ /]/).filter((word) => /^[a-z]/.test(word));
          const shared = interfaces(call).filter((name) => interfaces(step.phase).includes(name));
          expect(shared, `${call.name} in ${step.phase.name}`).not.toEqual([]);
        }
    }
    // The host end brought up right after the veth was created, the bridge made sure of before the attach.
    const { steps } = recordSteps(firstHandshake, phaseTree(firstHandshake), true);
    const step = (name: string) => steps.find((s) => s.phase.name === name);
    expect(step('veth create')?.folded.map((call) => call.name)).toEqual(['link up']);
    expect(step('bridge attach')?.folded.map((call) => call.name)).toEqual([
      'rtnetlink RTM_NEWLINK',
      'link up',
      'rtnetlink RTM_SETLINK',
    ]);
  });

  it('never folds or hides a call that failed', () => {
    const linkUp = firstHandshake.phases.find((p) => p.name === 'link up') as PhaseRecord;
    const lookup = firstHandshake.phases.find(isLookup) as PhaseRecord;
    const broken: HandshakeRecord = {
      ...firstHandshake,
      phases: firstHandshake.phases.map((p) =>
        p === linkUp || p === lookup ? { ...p, error: 'operation not permitted' } : p,
      ),
    };
    const ids = folded(broken).rows.map((row) => row.phase.id);
    expect(ids).toContain(linkUp.id);
    expect(ids).toContain(lookup.id);
  });

  it('shows the folded calls with their interfaces and answers in the details, and each call with n', () => {
    const { rows } = folded(firstHandshake);
    const attach = rows.find((row) => row.phase.name === 'bridge attach');
    if (!attach) throw new Error('no bridge attach row');
    const shown = phaseDetails(firstHandshake, attach.phase, 100, attach.folded).map(text);
    expect(shown).toContain('folded into this row (3, n shows each)');
    expect(shown.some((line) => /^ {2}rtnetlink RTM_NEWLINK pwlab0 .* EEXIST$/.test(line))).toBe(
      true,
    );
    expect(shown.some((line) => /^ {2}link up pwlab0 /.test(line))).toBe(true);
    const unfolded = waterfallRows(firstHandshake, { barWidth: 60 }).rows;
    expect(unfolded).toHaveLength(firstHandshake.phases.length);
    expect(unfolded.every((row) => row.folded.length === 0)).toBe(true);
    // The row's bars: its own, and those of the calls folded into it, where they ran.
    expect(attach.segments.length).toBeGreaterThan(1);
    const lines = waterfallLines(firstHandshake, 118, { hideLookups: true }).map((l) =>
      text(l.runs),
    );
    expect(lines.some((line) => /^ {4}bridge attach \S+ to pwlab0 \+3 /.test(line))).toBe(true);
    expect(lines.every((line) => line.length <= 118)).toBe(true);
  });
});

describe('a 1,000-handshake list', () => {
  it('redraws (list, waterfall, details, on a 120×36 screen) well within a frame of 50 ms', () => {
    const timeline = new Timeline(new RecordStore(1000));
    for (let i = 0; i < 1000; i++)
      timeline.add(handshakes[i % handshakes.length] as HandshakeRecord);
    expect(timeline.store.size).toBe(1000);
    const input = Object.assign(new PassThrough(), {
      isTTY: true,
      isRaw: false,
      setRawMode: () => input,
    });
    const output = Object.assign(new Writable({ write: (_c, _e, done) => done() }), {
      isTTY: true,
      columns: 120,
      rows: 36,
    });
    const view = new TimelineView({
      timeline,
      header: new HeaderState({ node: 'node-1', source: 'replay' }),
      replay: () => null,
      replayKeys: null,
      quit: () => undefined,
      input,
      output,
    });
    try {
      // Wall time per redraw, and the process's CPU time over them all: on a shared machine a redraw can
      // wait for a CPU, so the worst wall time says more about the neighbours than about the timeline.
      const times: number[] = [];
      const cpu = process.cpuUsage();
      for (let i = 0; i < 100; i++) {
        // Down the list a pod at a time: a new waterfall each redraw.
        timeline.move(1);
        const started = performance.now();
        view.renderNow();
        times.push(performance.now() - started);
      }
      const { user, system } = process.cpuUsage(cpu);
      const cpuMs = (user + system) / 1000 / times.length;
      times.sort((a, b) => a - b);
      const median = times[50] ?? 0;
      console.log(
        `1,000 handshakes, 100 redraws at 120×36: median ${median.toFixed(2)} ms, 90th percentile ${(times[90] ?? 0).toFixed(2)} ms, worst ${(times[99] ?? 0).toFixed(2)} ms, CPU ${cpuMs.toFixed(2)} ms a redraw`,
      );
      expect(median).toBeLessThan(50);
      expect(cpuMs).toBeLessThan(50);
    } finally {
      view.destroy();
    }
  });
});

function podOf(record: HandshakeRecord): string {
  return `${record.pod?.namespace}/${record.pod?.name} ${record.kind}`;
}
