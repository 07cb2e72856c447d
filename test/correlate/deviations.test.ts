// A handshake's deviations name what is unusual for its runtime and plugin, not how they always work: the real
// recording gives none, and hand-made variations of its events (what the real stack cannot be made to do) say what
// differs.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Correlator } from '../../src/correlate/correlator.js';
import { deviations, normalOrderNote } from '../../src/correlate/normal-order.js';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import type { ProbeEvent } from '../../src/events.js';
import { recordSpans } from '../../src/otel/spans.js';
import { readRecording, replay } from './recordings.js';

const { header, lines } = readRecording('containerd2-three-pods.ndjson');

/** The events the real recording gives the correlator, in the order it gets them. */
function recordedEvents(): { events: ProbeEvent[]; records: HandshakeRecord[] } {
  const events: ProbeEvent[] = [];
  const original = Correlator.prototype.pushInto;
  vi.spyOn(Correlator.prototype, 'pushInto').mockImplementation(function (
    this: Correlator,
    event,
    out,
  ) {
    events.push(event);
    original.call(this, event, out);
  });
  const records = replay(header, lines);
  vi.restoreAllMocks();
  return { events, records };
}

function correlate(events: ProbeEvent[], runtime: string | null = 'containerd'): HandshakeRecord[] {
  const correlator = new Correlator({
    clockOffsetNs: BigInt(header.clockOffsetNs),
    criProbes: true,
    runtime,
  });
  const sorted = [...events].sort((a, b) => (a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : 0));
  const records: HandshakeRecord[] = [];
  for (const event of sorted) records.push(...correlator.push(event));
  records.push(...correlator.flush());
  return records;
}

const { events, records } = recordedEvents();
const pod = records.find((r) => r.kind === 'handshake') as HandshakeRecord;
const pidOf = (name: string) =>
  pod.phases.find((phase) => phase.name === name)?.attributes['process.pid'] as number;
/** The first and last event time of a process: a plugin run's exec and exit. */
const spanOf = (pid: number) => {
  const times = events
    .filter((event) => event.pid === pid)
    .map((event) => event.ns)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { startNs: times[0] ?? 0n, endNs: times.at(-1) ?? 0n };
};
const deviationsOf = (made: HandshakeRecord[]) =>
  made.find((r) => r.kind === 'handshake' && r.sandboxId === pod.sandboxId)?.deviations;

afterEach(() => vi.restoreAllMocks());

describe('a normal pod on containerd 2.1.9 with bridge (real recording containerd2-three-pods.ndjson)', () => {
  it('has no deviations, replayed or fed straight to the correlator', () => {
    expect(pod.outcome).toBe('ok');
    expect(records.filter((r) => r.kind === 'handshake').map((r) => r.deviations)).toEqual([
      [],
      [],
      [],
    ]);
    expect(deviationsOf(correlate(events))).toEqual([]);
  });

  it('compared with the textbook when the runtime has no profile: one line says so, then each difference', () => {
    expect(deviationsOf(correlate(events, 'cri-o'))).toEqual([
      "no profile of runtime cri-o: its order compared with the textbook's",
      'cni ADD loopback ran in parallel with cni ADD bridge',
      'sandbox start after cni ADD bridge',
    ]);
  });
});

describe('hand-made corners: the real events edited into what this runtime never does', () => {
  it('says when loopback is missing (its plugin run taken out)', () => {
    const loopback = pidOf('cni ADD loopback');
    const made = correlate(events.filter((event) => event.pid !== loopback));
    expect(deviationsOf(made)).toEqual([
      'no cni ADD loopback: containerd runs it beside the primary plugin',
    ]);
  });

  it('says when a plugin ran twice (its run copied to just after it, as a retry would)', () => {
    const loopback = pidOf('cni ADD loopback');
    const run = spanOf(loopback);
    const runNs = run.endNs - run.startNs;
    const retry = events
      .filter((event) => event.pid === loopback)
      .map((event) => ({
        ...event,
        pid: event.pid + 1_000_000,
        tid: event.tid + 1_000_000,
        ns: event.ns + runNs + 1_000_000n,
      }));
    expect(deviationsOf(correlate([...events, ...retry]))).toEqual([
      'cni ADD loopback ran 2 times: containerd runs each plugin once',
    ]);
  });

  it('says when the sandbox started before the network was set up (its shim and runc execs moved earlier)', () => {
    // Just after loopback exited, while bridge still runs: podwire joins a sandbox's execs by its id, which it learns
    // from the first plugin to exit, so a sandbox started before that is not seen at all.
    const early = spanOf(pidOf('cni ADD loopback')).endNs + 1_000_000n;
    const moved = events.map((event) =>
      event.kind === 'sb_exec' && event.argv.includes(pod.sandboxId as string)
        ? { ...event, ns: early }
        : event,
    );
    expect(deviationsOf(correlate(moved))).toEqual([
      'sandbox start began before cni ADD bridge ended: containerd starts the sandbox after the network',
    ]);
  });
});

describe('the primary plugin against its profile (hand-made handshakes)', () => {
  const bridge = {
    name: 'bridge',
    startNs: 10n,
    endNs: 20n,
    failed: false,
    steps: ['veth create', 'bridge attach', 'addr add'],
    ranIpam: true,
  };
  const loopback = { ...bridge, name: 'loopback', steps: ['link up'], ranIpam: false };
  const handshake = { runtime: 'containerd', netnsCreateNs: 5n, sandboxStartNs: 30n };

  it('names a step bridge always takes and did not, and one it never takes', () => {
    expect(
      deviations({
        ...handshake,
        plugins: [loopback, { ...bridge, steps: ['veth move', 'addr add'], ranIpam: false }],
      }),
    ).toEqual([
      'veth move in cni ADD bridge: not expected (bridge creates the veth with its peer already in the pod netns)',
      'no veth create in cni ADD bridge: expected (bridge makes the pod a veth pair, one RTM_NEWLINK from inside the pod namespace)',
      'no bridge attach in cni ADD bridge: expected (bridge sets the host end’s master to its bridge)',
      'no IPAM plugin run by cni ADD bridge: expected (bridge delegates addresses to its IPAM plugin)',
    ]);
  });

  it('leaves the steps after a failure to the error, and says a plugin without profile is compared with the textbook', () => {
    expect(
      deviations({ ...handshake, plugins: [loopback, { ...bridge, steps: [], failed: true }] }),
    ).toEqual([]);
    expect(
      deviations({
        ...handshake,
        plugins: [loopback, { ...bridge, name: 'ptp', steps: ['veth create'] }],
      }),
    ).toEqual([
      "no profile of plugin ptp: its steps compared with the textbook's",
      'veth created with its peer already in the pod netns: no veth move',
      'pod interface named at creation: no link rename',
    ]);
  });

  it('says when no plugin ran at all', () => {
    expect(deviations({ ...handshake, plugins: [] })).toEqual([
      'no CNI plugin was seen for this sandbox (host network, or plugins outside the CNI bin dirs podwire watches)',
    ]);
  });
});

describe("the ready status's note", () => {
  it("says once how containerd's and bridge's normal order differs from the textbook", () => {
    const note = normalOrderNote('containerd');
    expect(note.fields.normalOrder).toEqual({
      containerd: [
        'the sandbox starts after the network (the textbook starts it first)',
        'loopback runs beside the primary plugin (the textbook runs it first)',
      ],
      bridge: [
        'the veth is created with its peer already in the pod netns (no veth move)',
        'the pod interface is named at creation (no link rename)',
      ],
    });
    expect(note.text).toContain("deviations are from containerd's normal order");
  });
});

describe('where a deviation shows in a trace', () => {
  it('is one `deviation` event on the root span, and a normal pod has none', () => {
    expect(recordSpans(pod)[0]?.events).toEqual([]);
    const loopback = pidOf('cni ADD loopback');
    const odd = correlate(events.filter((event) => event.pid !== loopback)).find(
      (r) => r.sandboxId === pod.sandboxId,
    ) as HandshakeRecord;
    expect(recordSpans(odd)[0]?.events.map((event) => event.attributes)).toEqual([
      { 'podwire.deviation': 'no cni ADD loopback: containerd runs it beside the primary plugin' },
    ]);
  });
});
