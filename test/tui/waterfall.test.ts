// The waterfall of real records: nesting, kinds, bars on the record's time scale, the failure where it happened.
import { describe, expect, it } from 'vitest';
import { type HandshakeRecord, type PhaseRecord, phaseKinds } from '../../src/correlate/record.js';
import { runsWidth } from '../../src/tui/columns.js';
import { phaseDetails, recordDetails } from '../../src/tui/details.js';
import { podName } from '../../src/tui/model.js';
import { kindLabel } from '../../src/tui/phases.js';
import {
  kindStyle,
  legendLine,
  waterfallColumns,
  waterfallLines,
  waterfallRows,
} from '../../src/tui/waterfall.js';
import { printfData, readRecording, replay } from '../correlate/recordings.js';

const ipam = readRecording('ipam-exhausted.ndjson');
const ipamRecords = replay(ipam.header, ipam.lines);
const tenPods = readRecording('ten-pods-plugin-uprobes.ndjson');
const tenPodsRecords = replay(tenPods.header, tenPods.lines);
// The same real recording with one sandbox's exec of its process taken out: its sandbox start never ends.
const firstInit = tenPods.lines.findIndex((line) => printfData(line)?.startsWith('sb_init'));
const openRecords = replay(
  tenPods.header,
  tenPods.lines.filter((_, index) => index !== firstInit),
);
const failed = ipamRecords.find((r) => r.outcome === 'failed') as HandshakeRecord;
const firstPod = ipamRecords[0] as HandshakeRecord;
const text = (runs: { text: string }[]) => runs.map((run) => run.text).join('');

describe('the waterfall of the pod whose IPAM ran out of addresses', () => {
  const { rows } = waterfallRows(failed, { barWidth: 50 });
  const row = (name: string) => rows.find((r) => r.phase.name === name);

  it('has one row per phase, each after the phase it ran inside, one level deeper', () => {
    expect(rows).toHaveLength(failed.phases.length);
    expect(new Set(rows.map((r) => r.phase.id)).size).toBe(failed.phases.length);
    rows.forEach((r, index) => {
      if (r.phase.parentId === null) {
        expect(r.depth).toBe(0);
        return;
      }
      const parentAt = rows.findIndex((p) => p.phase.id === r.phase.parentId);
      expect(parentAt, r.phase.name).toBeLessThan(index);
      expect(r.depth).toBe((rows[parentAt]?.depth ?? -1) + 1);
      // The name, then what the step acts on.
      expect(r.label.startsWith(`${'  '.repeat(r.depth)}${r.phase.name}`), r.label).toBe(true);
    });
    expect(rows.map((r) => `${r.depth} ${r.phase.name}`).slice(0, 3)).toEqual([
      '0 cri RunPodSandbox',
      '1 netns create',
      '1 cni ADD loopback',
    ]);
    expect(row('ipam host-local')?.depth).toBe(2);
    expect(row('veth create')?.depth).toBe(2);
  });

  it('colours each row by who acted: CRI, netns, CNI plugin, IPAM, rtnetlink', () => {
    expect(row('cri RunPodSandbox')?.kind).toBe('cri');
    expect(row('netns create')?.kind).toBe('netns');
    expect(row('cni ADD bridge')?.kind).toBe('cni');
    expect(row('ipam host-local')?.kind).toBe('ipam');
    for (const name of ['veth create', 'bridge attach', 'link up', 'veth delete'])
      expect(row(name)?.kind, name).toBe('rtnetlink');
    expect(row('rtnetlink RTM_GETLINK')?.kind).toBe('rtnetlink');
    const teardown = ipamRecords.find((r) => r.kind === 'teardown') as HandshakeRecord;
    const teardownRows = waterfallRows(teardown, { barWidth: 50 }).rows;
    expect(teardownRows.find((r) => r.phase.name === 'cri StopPodSandbox')?.kind).toBe('cri');
    expect(waterfallRows(firstPod, { barWidth: 50 }).rows.map((r) => r.kind)).toEqual(
      expect.arrayContaining(['sandbox', 'rtnetlink']),
    );
  });

  it('draws bars inside the width, the CRI call across all of it, later phases further right', () => {
    for (const r of rows) {
      expect(r.offset).toBeGreaterThanOrEqual(0);
      expect(r.length).toBeGreaterThanOrEqual(1);
      expect(r.offset + r.length, r.phase.name).toBeLessThanOrEqual(50);
    }
    expect(row('cri RunPodSandbox')).toMatchObject({ offset: 0, length: 50 });
    const netns = row('netns create')?.offset ?? -1;
    const bridge = row('cni ADD bridge')?.offset ?? -1;
    const ipamOffset = row('ipam host-local')?.offset ?? -1;
    expect(netns).toBeLessThanOrEqual(bridge);
    expect(bridge).toBeLessThanOrEqual(ipamOffset);
    // The bridge plugin ran 14.0 of the record's 115.6 ms: about 6 of 50 columns, from about 28% in.
    expect(row('cni ADD bridge')?.length).toBeGreaterThanOrEqual(5);
    expect(row('cni ADD bridge')?.length).toBeLessThanOrEqual(7);
    expect(Math.abs(bridge - 14)).toBeLessThanOrEqual(1);
  });

  it('marks the failed phases, and prints the message once, on the deepest phase that says it', () => {
    expect(rows.filter((r) => r.failed).map((r) => r.phase.name)).toEqual([
      'cri RunPodSandbox',
      'cni ADD bridge',
      'ipam host-local',
    ]);
    expect(rows.filter((r) => r.cause).map((r) => r.phase.name)).toEqual(['ipam host-local']);
    expect(row('ipam host-local')?.message).toMatch(/no IP addresses available in range set/);
    expect(row('cni ADD bridge')?.message).toBeNull();
    expect(row('cri RunPodSandbox')?.message).toBe('RunPodSandbox returned an error');
  });

  it('as lines: legend, rows no wider than the pane, the failure in red, the deviations', () => {
    for (const width of [78, 98, 140]) {
      // Hand-made: the real record has no deviation (containerd's normal order); one is added to see it shown.
      const lines = waterfallLines(
        {
          ...failed,
          deviations: ['no cni ADD loopback: containerd runs it beside the primary plugin'],
        },
        width,
      );
      for (const line of lines)
        expect(runsWidth(line.runs), `${width}: ${text(line.runs)}`).toBeLessThanOrEqual(width);
      expect(text(lines[0]?.runs ?? [])).toMatch(
        /CRI .*netns .*CNI plugin .*IPAM .*rtnetlink .*sandbox/,
      );
      const ipamLine = lines.find((line) =>
        text(line.runs).trimStart().startsWith('ipam host-local'),
      );
      expect(ipamLine?.runs.some((run) => run.style === 'red-fg')).toBe(true);
      expect(text(ipamLine?.runs ?? [])).toMatch(/3\.5 ms ✗$/);
      const all = lines.map((line) => text(line.runs)).join('\n');
      expect(all).toContain('failed in ipam host-local: failed to allocate for range 0');
      expect(all).toContain('unusual: no cni ADD loopback: containerd runs it beside');
      expect(lines.filter((line) => line.phaseId !== null)).toHaveLength(failed.phases.length);
    }
    const { bar } = waterfallColumns(78);
    expect(bar).toBeGreaterThanOrEqual(30);
  });

  it('can collapse the rtnetlink lookups, never a failed one, and fold the calls that serve a step', () => {
    const lookups = failed.phases.filter((p) => p.name.startsWith('rtnetlink RTM_GET')).length;
    const collapsed = waterfallRows(failed, { barWidth: 40, hideLookups: true });
    expect(collapsed.hiddenLookups).toBe(lookups);
    expect(collapsed.foldedCalls).toBeGreaterThan(0);
    expect(collapsed.rows).toHaveLength(failed.phases.length - lookups - collapsed.foldedCalls);
    expect(collapsed.rows.reduce((sum, r) => sum + r.folded.length, 0)).toBe(collapsed.foldedCalls);
    expect(collapsed.rows.some((r) => r.phase.name.startsWith('rtnetlink RTM_GET'))).toBe(false);
    const lines = waterfallLines(failed, 80, { hideLookups: true }).map((line) => text(line.runs));
    expect(lines[0]).toMatch(
      new RegExp(`^${lookups} lookups hidden, \\+${collapsed.foldedCalls} calls folded \\(n\\) `),
    );
    expect(lines[0]).toMatch(/ sandbox +$/);
  });
});

describe('waterfalls of every recorded record', () => {
  it('keep bars within the width, phases that never ended drawn to the end as open', () => {
    let open = 0;
    for (const record of [...ipamRecords, ...tenPodsRecords, ...openRecords]) {
      for (const width of [1, 7, 40]) {
        const { rows } = waterfallRows(record, { barWidth: width });
        expect(rows).toHaveLength(record.phases.length);
        for (const r of rows) {
          expect(r.offset, podName(record)).toBeGreaterThanOrEqual(0);
          expect(r.offset + r.length, `${podName(record)} ${r.phase.name}`).toBeLessThanOrEqual(
            width,
          );
          if (r.open && width === 40) {
            open++;
            expect(r.offset + r.length).toBe(width);
            expect(r.ms).toBe('open');
          }
        }
      }
    }
    // The recording without one sb_init has a sandbox start with end null: the check above ran on it.
    expect(open).toBeGreaterThan(0);
  });

  it('nest a teardown under its two CRI calls', () => {
    const teardown = ipamRecords.find((r) => r.kind === 'teardown') as HandshakeRecord;
    const { rows } = waterfallRows(teardown, { barWidth: 40 });
    expect(rows.filter((r) => r.depth === 0).map((r) => r.phase.name)).toEqual([
      'cri StopPodSandbox',
      'cri RemovePodSandbox',
    ]);
    const stopAt = rows.findIndex((r) => r.phase.name === 'cri StopPodSandbox');
    expect(rows[stopAt + 1]?.phase.parentId).toBe(rows[stopAt]?.phase.id);
  });
});

describe('odd records', () => {
  it('are drawn flat where parents are missing or loop, and with no phases at all', () => {
    const odd: HandshakeRecord = {
      ...firstPod,
      phases: [
        { ...(firstPod.phases[0] as HandshakeRecord['phases'][0]), id: 0, parentId: 7 },
        { ...(firstPod.phases[1] as HandshakeRecord['phases'][0]), id: 1, parentId: 2 },
        { ...(firstPod.phases[2] as HandshakeRecord['phases'][0]), id: 2, parentId: 1, end: null },
        { ...(firstPod.phases[3] as HandshakeRecord['phases'][0]), id: 3, parentId: 3, start: 'x' },
      ],
    };
    const { rows } = waterfallRows(odd, { barWidth: 30 });
    expect(rows.map((r) => r.phase.id).sort()).toEqual([0, 1, 2, 3]);
    for (const r of rows) expect(r.offset + r.length).toBeLessThanOrEqual(30);
    const empty = waterfallLines({ ...firstPod, phases: [], deviations: [] }, 60);
    expect(empty.map((line) => text(line.runs))).toContain('no phases in this record');
  });
});

describe('phases the timeline has not seen before', () => {
  const phaseNamed = (name: string) => firstPod.phases.find((p) => p.name === name) as PhaseRecord;
  // Named unlike any phase today: a planned step (containers start), a namespace step, lookups.
  const record: HandshakeRecord = {
    ...firstPod,
    phases: firstPod.phases.map((phase) => {
      if (phase === phaseNamed('sandbox start'))
        return { ...phase, name: 'containers start', kind: 'cri' };
      if (phase === phaseNamed('netns create')) return { ...phase, name: 'pod namespace pinned' };
      if (phase.attributes['podwire.netlink.type'] === 'RTM_GETLINK')
        return { ...phase, name: 'link lookup' };
      return phase;
    }),
  };

  it('are coloured by the kind their record gives, whatever their name', () => {
    const lines = waterfallLines(record, 100);
    const barStyle = (name: string) => {
      const line = lines.find((l) => text(l.runs).trimStart().startsWith(`${name} `));
      return line?.runs.find((run) => /^[█░]+$/.test(run.text))?.style;
    };
    expect(barStyle('containers start')).toBe(kindStyle.cri);
    expect(barStyle('pod namespace pinned')).toBe(kindStyle.netns);
    const containers = record.phases.find((p) => p.name === 'containers start') as PhaseRecord;
    const title = phaseDetails(record, containers, 90)[0] ?? [];
    expect(text(title)).toBe('containers start  CRI');
    expect(title[1]?.style).toBe(kindStyle.cri);
  });

  it('all have a place in the legend: every kind a record can carry, each in its own colour', () => {
    const legend = legendLine();
    const swatches = legend.filter((run) => run.style !== undefined).map((run) => run.style);
    expect(swatches).toEqual(phaseKinds.map((kind) => kindStyle[kind]));
    expect(new Set(swatches).size).toBe(phaseKinds.length);
    for (const kind of phaseKinds) expect(text(legend)).toContain(` ${kindLabel[kind]} `);
  });

  it('are hidden as lookups by their netlink request type, not by their name', () => {
    const lookups = record.phases.filter((p) => p.name === 'link lookup').length;
    expect(lookups).toBeGreaterThan(0);
    const collapsed = waterfallRows(record, { barWidth: 40, hideLookups: true });
    expect(collapsed.rows.map((r) => r.phase.name)).not.toContain('link lookup');
    expect(collapsed.hiddenLookups).toBeGreaterThanOrEqual(lookups);
  });
});

describe('the details of a phase', () => {
  const body = (lines: { text: string }[][]) => lines.map(text).join('\n');

  it('show an rtnetlink step as its decoded request and the kernel answer', () => {
    const veth = firstPod.phases.find((p) => p.name === 'veth create');
    const shown = body(phaseDetails(firstPod, veth as HandshakeRecord['phases'][0], 90));
    expect(shown).toMatch(/rtnetlink request\n(.*\n)*\s+podwire\.netlink\.type\s+RTM_NEWLINK/);
    expect(shown).toMatch(/podwire\.link\.kind\s+veth/);
    expect(shown).toMatch(/rtnetlink answer\n(.*\n)*\s+podwire\.netlink\.errno_name\s+OK/);
    expect(shown).toMatch(/duration\s+2\.0 ms/);
  });

  it('show a plugin with its CNI environment, exit code, error and result JSON', () => {
    const bridge = failed.phases.find((p) => p.name === 'cni ADD bridge');
    const shown = body(phaseDetails(failed, bridge as HandshakeRecord['phases'][0], 90));
    expect(shown).toMatch(/CNI environment\n\s+podwire\.cni\.command \(CNI_COMMAND\)\s+ADD/);
    expect(shown).toMatch(/podwire\.netns \(CNI_NETNS\)\s+\/var\/run\/netns\/cni-/);
    expect(shown).toMatch(/podwire\.cni\.exit_code\s+1/);
    expect(shown).toMatch(/error\s+failed to allocate for range 0/);
    const ok = firstPod.phases.find((p) => p.name === 'cni ADD bridge');
    const result = body(phaseDetails(firstPod, ok as HandshakeRecord['phases'][0], 90));
    expect(result).toContain('"cniVersion": "1.0.0"');
    // Every attribute is shown, whatever group it falls in.
    for (const key of Object.keys(ok?.attributes ?? {})) expect(result).toContain(key);
  });

  it('fit the pane: long values wrap instead of running off', () => {
    for (const record of ipamRecords)
      for (const phase of record.phases)
        for (const line of phaseDetails(record, phase, 60))
          expect(runsWidth(line), text(line)).toBeLessThanOrEqual(60);
    const shown = body(recordDetails(failed, 80));
    expect(shown).toMatch(/sandbox\s+4360137b45052e69/);
    expect(shown).toMatch(/error\s+ipam host-local: failed to allocate/);
  });
});
