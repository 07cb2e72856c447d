// The metrics sink (--metrics): handshake and phase latencies, outcomes and the daemon's own losses, for Prometheus.
// Names and labels are what dashboards/podwire.json queries; change both together.
import type { Counter, Histogram } from '@opentelemetry/api';
import type { HandshakeRecord, PhaseRecord } from '../correlate/record.js';
import type { StatusEvent } from '../events.js';
import { type DropReason, dropReasons } from '../otel/drops.js';
import type { Telemetry } from '../otel/telemetry.js';
import type { Sink } from './ndjson.js';

/** 1 ms to 30 s: a pod's network comes up in tens of milliseconds when all is well, in seconds when it is not. */
export const durationBuckets = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/** The plugin a phase belongs to: its own for a plugin or IPAM phase, the enclosing one's for a netlink request. */
export function phasePlugin(phases: PhaseRecord[], phase: PhaseRecord): string {
  for (let at: PhaseRecord | undefined = phase; at; ) {
    const plugin = pluginName(at);
    if (plugin) return plugin;
    at = at.parentId === null ? undefined : phases[at.parentId];
  }
  return 'none';
}

/** The plugin that wired the pod: the first CNI plugin run that is not loopback. */
export function primaryPlugin(record: HandshakeRecord): string {
  for (const phase of record.phases) {
    const plugin = phase.kind === 'cni' ? pluginName(phase) : null;
    if (plugin && plugin !== 'loopback') return plugin;
  }
  return 'unknown';
}

/** The binary a plugin or IPAM phase ran, as the correlator recorded it; null for other phases. */
function pluginName(phase: PhaseRecord): string | null {
  if (phase.kind !== 'cni' && phase.kind !== 'ipam') return null;
  const name = phase.attributes['process.executable.name'];
  return typeof name === 'string' && name !== '' ? name : null;
}

export class MetricsSink implements Sink {
  private readonly handshakeDuration: Histogram;
  private readonly phaseDuration: Histogram;
  private readonly handshakes: Counter;
  private readonly teardowns: Counter;
  private readonly eventsLost: Counter;
  private readonly eventsLate: Counter;
  private readonly probeRestarts: Counter;
  private readonly phases: Counter;
  /** The steps (kind, phase, plugin) podwire has counted: from its first sight both statuses have a series. */
  private readonly phasesSeen = new Set<string>();
  private readonly telemetry: Telemetry;

  /** `droppedSpans`: what the OTLP export has dropped so far (nothing when it is off). */
  constructor(
    telemetry: Telemetry,
    droppedSpans: () => Record<DropReason, number> | null = () => null,
  ) {
    const meter = telemetry.meter;
    if (!meter) throw new Error('MetricsSink needs telemetry started with metrics');
    this.telemetry = telemetry;
    const advice = { explicitBucketBoundaries: durationBuckets };
    this.handshakeDuration = meter.createHistogram('podwire_handshake_duration_seconds', {
      description:
        'Pod network handshakes: from RunPodSandbox (or the first step seen) to its return',
      unit: 's',
      advice,
    });
    this.phaseDuration = meter.createHistogram('podwire_phase_duration_seconds', {
      description:
        'Each step of a handshake or teardown (CRI call, CNI plugin, IPAM, netlink request, ...)',
      unit: 's',
      advice,
    });
    this.handshakes = meter.createCounter('podwire_handshakes_total', {
      description: 'Pod network handshakes by outcome',
    });
    this.teardowns = meter.createCounter('podwire_teardowns_total', {
      description: 'Pod network teardowns by outcome',
    });
    this.eventsLost = meter.createCounter('podwire_events_lost_total', {
      description: 'Probe events the kernel dropped before podwire read them',
    });
    this.eventsLate = meter.createCounter('podwire_events_late_total', {
      description:
        'Probe events read after newer ones had gone on: the handshakes they belong to may lack them',
    });
    this.probeRestarts = meter.createCounter('podwire_probe_restarts_total', {
      description: 'Probe programs that died and were attached again',
    });
    this.phases = meter.createCounter('podwire_phases_total', {
      description:
        'Steps of handshakes and teardowns by status: both statuses of a step are shown from its first sight',
    });
    meter
      .createObservableCounter('podwire_spans_dropped_total', {
        description:
          'Spans not delivered to the OTLP collector: pushed out of a full queue, refused, or rejected by it',
      })
      .addCallback((result) => {
        for (const reason of dropReasons) result.observe(droppedSpans()?.[reason] ?? 0, { reason });
      });
    // Counters that have not moved yet are still shown (as 0), so that rates and alerts have a series from the start.
    for (const outcome of ['ok', 'failed', 'incomplete']) {
      this.handshakes.add(0, { outcome });
      this.teardowns.add(0, { outcome });
    }
    this.eventsLost.add(0, { source: 'kernel' });
    this.eventsLate.add(0, { source: 'kernel' });
    this.probeRestarts.add(0, { source: 'kernel' });
  }

  write(record: HandshakeRecord | StatusEvent): void {
    if (record.kind === 'status') {
      const source = typeof record.source === 'string' ? record.source : 'unknown';
      if (record.state === 'events-lost' && typeof record.lost === 'number')
        this.eventsLost.add(record.lost, { source });
      if (record.state === 'events-late' && typeof record.late === 'number')
        this.eventsLate.add(record.late, { source });
      if (record.state === 'probe-restarted') this.probeRestarts.add(1, { source });
      // /ready follows what the status lines say of the probes.
      if (record.state === 'ready' || record.state === 'probe-restarted')
        this.telemetry.setReady(true, '');
      if (record.state === 'probe-failed') this.telemetry.setReady(false, record.message);
      if (record.state === 'stopped') this.telemetry.setReady(false, 'podwire is stopping');
      return;
    }
    const seconds = (ms: number) => ms / 1000;
    if (record.kind === 'handshake') {
      this.handshakes.add(1, { outcome: record.outcome });
      this.handshakeDuration.record(seconds(record.durationMs), {
        outcome: record.outcome,
        runtime: record.runtime ?? 'unknown',
        primary_plugin: primaryPlugin(record),
      });
    } else {
      this.teardowns.add(1, { outcome: record.outcome });
    }
    for (const phase of record.phases) {
      if (phase.durationMs === null) continue;
      const step = {
        kind: record.kind,
        phase: phase.name,
        plugin: phasePlugin(record.phases, phase),
      };
      const status = phase.error ? 'error' : 'ok';
      this.phaseDuration.record(seconds(phase.durationMs), { ...step, status });
      // Prometheus's rate() sees a series move only between two of its samples: a step's error series made by
      // its first error would hide that error from every rate. So a step seen ok has its error series at 0.
      const key = `${step.kind}\0${step.phase}\0${step.plugin}`;
      if (!this.phasesSeen.has(key)) {
        this.phasesSeen.add(key);
        this.phases.add(0, { ...step, status: 'ok' });
        this.phases.add(0, { ...step, status: 'error' });
      }
      this.phases.add(1, { ...step, status });
    }
  }

  async close(): Promise<void> {}
}
