// The timeline's list on real recordings: newest first, the filters an SRE types, the selection, row text.
import { describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import { runsWidth, tagged } from '../../src/tui/columns.js';
import {
  filterLabel,
  listRow,
  noFilter,
  podName,
  RecordStore,
  Timeline,
} from '../../src/tui/model.js';
import { slowestPhase } from '../../src/tui/phases.js';
import { readRecording, replay } from '../correlate/recordings.js';

const ipam = readRecording('ipam-exhausted.ndjson');
const ipamRecords = replay(ipam.header, ipam.lines);
const tenPods = readRecording('ten-pods-plugin-uprobes.ndjson');
const tenPodsRecords = replay(tenPods.header, tenPods.lines);

const label = (record: HandshakeRecord) => `${record.kind} ${podName(record)} ${record.outcome}`;
const timelineOf = (records: HandshakeRecord[]) => {
  const timeline = new Timeline();
  for (const record of records) timeline.add(record);
  return timeline;
};
const failed = ipamRecords.find((r) => r.outcome === 'failed') as HandshakeRecord;

describe('the list of a replayed node where host-local ran out of addresses (ipam-exhausted)', () => {
  it('lists the newest record first: the two teardowns, then the failed third pod, then the first two', () => {
    const timeline = timelineOf(ipamRecords);
    expect(timeline.rows().map((entry) => label(entry.record))).toEqual([
      'teardown default/lab-9lfst ok',
      'teardown default/lab-6l8v4 ok',
      'handshake default/lab-h9n5x failed',
      'handshake default/lab-9lfst ok',
      'handshake default/lab-6l8v4 ok',
    ]);
  });

  it('f leaves only the failed handshake; t hides the teardowns', () => {
    const timeline = timelineOf(ipamRecords);
    timeline.filter = { ...noFilter, failedOnly: true };
    expect(timeline.rows().map((entry) => label(entry.record))).toEqual([
      'handshake default/lab-h9n5x failed',
    ]);
    timeline.filter = { ...noFilter, showTeardowns: false };
    expect(timeline.rows().map((entry) => entry.record.kind)).toEqual([
      'handshake',
      'handshake',
      'handshake',
    ]);
    expect(filterLabel(timeline.filter)).toBe('no teardowns');
  });

  it('/ matches namespace/name, a sandbox id prefix, the outcome and the error message', () => {
    const timeline = timelineOf(ipamRecords);
    const matching = (text: string) => {
      timeline.filter = { ...noFilter, text };
      return timeline.rows().map((entry) => label(entry.record));
    };
    expect(matching('default/lab-h9n')).toEqual(['handshake default/lab-h9n5x failed']);
    expect(matching('6L8V4')).toEqual([
      'teardown default/lab-6l8v4 ok',
      'handshake default/lab-6l8v4 ok',
    ]);
    const sandbox = (failed.sandboxId ?? '').slice(0, 8);
    expect(matching(sandbox)).toEqual(['handshake default/lab-h9n5x failed']);
    // A prefix only: the middle of a sandbox id is no way to name a pod.
    expect(matching((failed.sandboxId ?? '').slice(20, 30))).toEqual([]);
    expect(matching('failed')).toEqual(['handshake default/lab-h9n5x failed']);
    expect(matching('no IP addresses available')).toEqual(['handshake default/lab-h9n5x failed']);
    expect(matching('')).toHaveLength(5);
    timeline.filter = { text: 'lab', failedOnly: true, showTeardowns: false };
    expect(filterLabel(timeline.filter)).toBe('/lab, failed only, no teardowns');
  });

  it('a row says pod, outcome in its colour, total and the slowest phase', () => {
    const row = listRow(failed, 78);
    const text = row.map((run) => run.text).join('');
    expect(text).toMatch(/^ {2}default\/lab-h9n5x +failed +115\.6 ms {2}veth delete 17\.7 ms/);
    expect(runsWidth(row)).toBeLessThanOrEqual(78);
    expect(tagged(row, 78)).toContain('{red-fg} failed');
    const ok = ipamRecords.find((r) => r.kind === 'handshake' && r.outcome === 'ok');
    expect(tagged(listRow(ok as HandshakeRecord, 78), 78)).toContain('{green-fg} ok');
    const teardown = listRow(ipamRecords.find((r) => r.kind === 'teardown') as HandshakeRecord, 78);
    expect(teardown[0]?.text.trim()).not.toBe('');
  });
});

describe('the slowest phase of a record', () => {
  it('is where the time was spent itself, never the CRI call that spans everything', () => {
    const [first] = ipamRecords;
    expect(slowestPhase(first as HandshakeRecord)?.name).toBe('sandbox start');
    // The failed pod's bridge plugin waited on its veth deletion (the cleanup DEL): that is the slow step.
    expect(slowestPhase(failed)?.name).toBe('veth delete');
    for (const record of [...ipamRecords, ...tenPodsRecords]) {
      const slowest = slowestPhase(record);
      expect(slowest, podName(record)).not.toBeNull();
      expect(slowest?.parentId, `${podName(record)}: ${slowest?.name}`).not.toBeNull();
      // Phases that never ended (ten-pods-plugin-uprobes has some) are not ranked.
      expect(slowest?.end).not.toBeNull();
    }
  });

  it('is no phase for a record with only its CRI call, or none', () => {
    const [first] = ipamRecords;
    const onlyRoot = { ...(first as HandshakeRecord), phases: first?.phases.slice(0, 1) ?? [] };
    expect(slowestPhase(onlyRoot)).toBeNull();
    expect(slowestPhase({ ...onlyRoot, phases: [] })).toBeNull();
    expect(listRow({ ...onlyRoot, phases: [] }, 60).at(-1)?.text).toBe('  -');
  });
});

describe('the selection', () => {
  it('follows new records while at the top, and stays on its record once moved down', () => {
    const timeline = new Timeline();
    const [a, b, c, d] = tenPodsRecords;
    timeline.add(a as HandshakeRecord);
    timeline.add(b as HandshakeRecord);
    expect(timeline.selected()?.record).toBe(b);
    timeline.add(c as HandshakeRecord);
    expect(timeline.selected()?.record).toBe(c);
    timeline.move(1);
    expect(timeline.selected()?.record).toBe(b);
    timeline.add(d as HandshakeRecord);
    expect(timeline.selected()?.record).toBe(b);
    timeline.move(-10);
    expect(timeline.selected()?.record).toBe(d);
  });

  it('holds its record while the user reads its waterfall, and follows again from the top', () => {
    const timeline = new Timeline();
    const [a, b, c] = tenPodsRecords;
    timeline.add(a as HandshakeRecord);
    timeline.hold();
    timeline.add(b as HandshakeRecord);
    expect(timeline.selected()?.record).toBe(a);
    timeline.move(Number.NEGATIVE_INFINITY);
    timeline.add(c as HandshakeRecord);
    expect(timeline.selected()?.record).toBe(c);
  });

  it('stays in place when its record is filtered out, and keeps on screen in a short pane', () => {
    const timeline = timelineOf(tenPodsRecords);
    timeline.move(3);
    expect(timeline.selected()?.record.kind).toBe('teardown');
    timeline.filter = { ...noFilter, showTeardowns: false };
    expect(timeline.selected()?.record.kind).toBe('handshake');
    timeline.filter = noFilter;
    timeline.move(Number.POSITIVE_INFINITY);
    const window = timeline.window(5);
    expect(window.rows).toHaveLength(5);
    expect(window.rows[window.selectedIndex]?.record).toBe(tenPodsRecords[0]);
  });
});

describe('a busy node', () => {
  it('keeps the newest records up to the cap, oldest dropped', () => {
    const store = new RecordStore(7);
    for (const record of tenPodsRecords) store.add(record);
    expect(store.size).toBe(7);
    expect(store.newestFirst().map((entry) => entry.record)).toEqual(
      tenPodsRecords.slice(-7).reverse(),
    );
  });

  it('with 2,000 records listed, a screenful is computed quickly after each arrival', () => {
    const timeline = new Timeline(new RecordStore(2000));
    for (let i = 0; i < 3000; i++)
      timeline.add(tenPodsRecords[i % tenPodsRecords.length] as HandshakeRecord);
    expect(timeline.store.size).toBe(2000);
    timeline.move(700);
    const started = performance.now();
    for (let i = 0; i < 100; i++) {
      timeline.add(tenPodsRecords[i % tenPodsRecords.length] as HandshakeRecord);
      timeline.filter = { ...noFilter, text: i % 2 ? 'lab' : '' };
      const window = timeline.window(30);
      for (const entry of window.rows) tagged(listRow(entry.record, 100), 100);
    }
    // A hundred redraws' worth of list work: well under what a 100 ms redraw budget allows.
    expect(performance.now() - started).toBeLessThan(2000);
  });
});

describe('odd records', () => {
  it('are listed without a name, sandbox or phases that ended', () => {
    const [first] = tenPodsRecords;
    const odd: HandshakeRecord = {
      ...(first as HandshakeRecord),
      pod: { namespace: null, name: '', uid: null },
      sandboxId: null,
      error: { phase: 'cni ADD bridge', message: 'a {brace} and\na newline' },
      outcome: 'incomplete',
      phases: (first as HandshakeRecord).phases.map((phase) => ({
        ...phase,
        end: null,
        durationMs: null,
      })),
    };
    expect(podName(odd)).toBe('(unknown pod)');
    expect(podName({ ...odd, sandboxId: 'abcdef0123456789' })).toBe('sandbox abcdef012345');
    const row = tagged(listRow(odd, 80), 80);
    expect(row).toContain('{yellow-fg} incomplete');
    const timeline = timelineOf([odd]);
    timeline.filter = { ...noFilter, text: '{brace}' };
    expect(timeline.rows()).toHaveLength(1);
  });
});
