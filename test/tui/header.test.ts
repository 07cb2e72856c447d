// The header's facts from the status lines `podwire trace --json` emits, as the tracer writes them.
import { describe, expect, it } from 'vitest';
import type { StatusEvent } from '../../src/events.js';
import { HeaderState, headerLines } from '../../src/tui/header.js';
import { readRecording, replay } from '../correlate/recordings.js';

const status = (
  state: StatusEvent['state'],
  detail: Record<string, unknown> = {},
): StatusEvent => ({
  kind: 'status',
  state,
  time: '2026-11-28T00:32:45.000000000Z',
  message: `${state} happened`,
  ...detail,
});
const text = (header: HeaderState, replayState: Parameters<typeof headerLines>[1] = null) =>
  headerLines(header, replayState, { listed: 3, stored: 5 })
    .map((line) => line.map((run) => run.text).join(''))
    .join('\n');

describe('the header', () => {
  it('reads runtime, probes, mode, losses and restarts from statuses', () => {
    const header = new HeaderState({ node: 'node-1', source: 'live' });
    header.status(status('plugin-probes', { mode: 'uprobes', plugins: ['/opt/cni/bin/bridge'] }));
    header.status(
      status('runtime-found', { binary: '/usr/bin/containerd', version: '1.6.20', missing: [] }),
    );
    header.status(status('ready', { programs: ['kernel', 'sandbox', 'cri:/usr/bin/containerd'] }));
    header.status(status('events-lost', { source: 'kernel', lost: 4, lostTotal: 4 }));
    header.status(status('events-lost', { source: 'kernel', lost: 3, lostTotal: 7 }));
    header.status(status('probe-restarted', { source: 'kernel', probes: 40, restarts: 1 }));
    // "containerd runs again" carries no version: the runtime shown stays.
    header.status(status('runtime-found', { binary: '/usr/bin/containerd' }));
    expect(header.info).toMatchObject({
      node: 'node-1',
      runtime: 'containerd 1.6.20',
      probeMode: 'tracepoints + uprobes; plugins: uprobes',
      probesAttached: 3,
      eventsLost: 7,
      probeRestarts: 1,
    });
    const shown = text(header);
    expect(shown).toContain('node node-1');
    expect(shown).toContain('runtime containerd 1.6.20');
    expect(shown).toContain('probes 3');
    expect(shown).toContain('lost 7');
    expect(shown).toContain('restarts 1');
    // The last status worth a look is shown too.
    expect(shown).toContain('probe-restarted happened');
  });

  it('sums lost events when statuses carry no total, and keeps what the caller said', () => {
    const header = new HeaderState({ runtime: 'containerd 2.1.9', probeMode: 'syscalls' });
    header.status(status('events-lost', { lost: 2 }));
    header.status(status('events-lost', { lost: 5 }));
    header.status(status('runtime-found', { binary: '/usr/bin/containerd', version: '1.6.20' }));
    header.status(status('plugin-probes', { mode: 'uprobes' }));
    expect(header.info).toMatchObject({
      runtime: 'containerd 2.1.9',
      probeMode: 'syscalls',
      eventsLost: 7,
    });
  });

  it('says when the export fails and when it is back', () => {
    const header = new HeaderState({ exportState: 'OTLP → http://collector:4318/v1/traces ok' });
    header.status(
      status('export-failed', {
        exporter: 'otlp',
        dropped: { 'queue-full': 0, 'export-failed': 12 },
        droppedTotal: 12,
      }),
    );
    expect(header.info.exportState).toBe('OTLP failing: 12 dropped');
    header.status(status('export-resumed', { exporter: 'otlp' }));
    expect(header.info.exportState).toBe('OTLP → http://collector:4318/v1/traces ok');
    header.set({ eventsPerSecond: 1234.4 });
    expect(text(header)).toContain('events/s 1234');
  });

  it('shows the replay speed and whether it is paused', () => {
    const header = new HeaderState({ source: 'replay of run.ndjson' });
    const replaying = { speed: 0.25, paused: true, played: 4, total: 20, instant: false };
    expect(text(header, replaying)).toContain('replay 1/4× paused 4/20');
    expect(text(header, { ...replaying, speed: 2, paused: false })).toContain(
      'replay 2× playing 4/20',
    );
    expect(text(header, { ...replaying, played: 20, paused: false })).toContain('done 20/20');
  });

  it('takes the runtime from the records of a replay that has no statuses', () => {
    const recording = readRecording('ipam-exhausted.ndjson');
    const [record] = replay(recording.header, recording.lines);
    const header = new HeaderState({ source: 'replay' });
    if (record) header.record(record);
    expect(header.info.runtime).toBe('containerd');
  });
});
