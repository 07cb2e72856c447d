// The Prometheus endpoint after real recorded handshakes: the counts and latencies a user's dashboards read.
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import { parseListenAddress, startTelemetry, type Telemetry } from '../../src/otel/telemetry.js';
import { MetricsSink } from '../../src/sinks/metrics.js';
import { readRecording, replay } from '../correlate/recordings.js';
import { dashboardMetricsMissingFrom } from '../dashboards/queries.js';
import { freePort } from '../lab/node.js';
import { sample } from '../otel/prometheus.js';

describe('--metrics after two real recordings (ten pods; an IPAM range too small)', () => {
  let telemetry: Telemetry;
  let text: string;
  const records: HandshakeRecord[] = [];

  beforeAll(async () => {
    const started = await startTelemetry({
      metrics: { host: '127.0.0.1', port: await freePort() },
      status: () => {},
    });
    if ('error' in started) throw new Error(started.error);
    telemetry = started;
    const sink = new MetricsSink(telemetry);
    for (const name of ['ten-pods-plugin-uprobes.ndjson', 'ipam-exhausted.ndjson']) {
      const { header, lines } = readRecording(name);
      records.push(...replay(header, lines));
    }
    for (const record of records) sink.write(record);
    // A corner the lab does not produce on demand: the kernel said it lost events.
    sink.write({
      kind: 'status',
      state: 'events-lost',
      time: '',
      message: '',
      source: 'kernel',
      lost: 7,
    });
    sink.write({
      kind: 'status',
      state: 'events-late',
      time: '',
      message: '',
      source: 'kernel',
      late: 3,
    });
    sink.write({
      kind: 'status',
      state: 'probe-restarted',
      time: '',
      message: '',
      source: 'kernel',
    });
    text = await (await fetch(telemetry.metricsUrl as string)).text();
  });
  afterAll(() => telemetry?.shutdown());

  const count = (kind: string, outcome: string) =>
    records.filter((r) => r.kind === kind && r.outcome === outcome).length;

  it('counts handshakes and teardowns by outcome', () => {
    for (const outcome of ['ok', 'failed', 'incomplete']) {
      expect(sample(text, 'podwire_handshakes_total', { outcome })).toBe(
        count('handshake', outcome),
      );
      expect(sample(text, 'podwire_teardowns_total', { outcome })).toBe(count('teardown', outcome));
    }
    expect(count('handshake', 'failed')).toBe(1);
  });

  it('has a latency histogram per outcome and primary plugin, with buckets from 1 ms to 30 s', () => {
    const labels = { outcome: 'ok', runtime: 'containerd', primary_plugin: 'bridge' };
    expect(sample(text, 'podwire_handshake_duration_seconds_count', labels)).toBe(
      count('handshake', 'ok'),
    );
    const sum = records
      .filter((r) => r.kind === 'handshake' && r.outcome === 'ok')
      .reduce((s, r) => s + r.durationMs / 1000, 0);
    expect(sample(text, 'podwire_handshake_duration_seconds_sum', labels)).toBeCloseTo(sum, 6);
    for (const le of ['0.001', '0.01', '0.1', '1', '10', '30', '+Inf'])
      expect(
        sample(text, 'podwire_handshake_duration_seconds_bucket', { ...labels, le }),
      ).not.toBeNull();
    expect(
      sample(text, 'podwire_handshake_duration_seconds_bucket', { ...labels, le: '+Inf' }),
    ).toBe(count('handshake', 'ok'));
  });

  it('breaks handshakes down by phase and plugin, the failing ones marked error', () => {
    const phases = (name: string) =>
      records.flatMap((r) => r.phases.filter((p) => p.name === name && r.kind === 'handshake'));
    expect(
      sample(text, 'podwire_phase_duration_seconds_count', {
        kind: 'handshake',
        phase: 'ipam host-local',
        plugin: 'host-local',
        status: 'error',
      }),
    ).toBe(1);
    expect(
      sample(text, 'podwire_phase_duration_seconds_count', {
        kind: 'handshake',
        phase: 'veth create',
        plugin: 'bridge',
        status: 'ok',
      }),
    ).toBe(phases('veth create').length);
    expect(
      sample(text, 'podwire_phase_duration_seconds_count', {
        kind: 'handshake',
        phase: 'cri RunPodSandbox',
        plugin: 'none',
        status: 'ok',
      }),
    ).toBe(phases('cri RunPodSandbox').filter((p) => !p.error).length);
  });

  it('counts each step by status, the status it has not had yet at 0 from its first sight, for rate()', () => {
    const step = { kind: 'handshake', phase: 'ipam host-local', plugin: 'host-local' };
    const ipam = records.flatMap((r) =>
      r.kind === 'handshake' ? r.phases.filter((p) => p.name === 'ipam host-local') : [],
    );
    expect(sample(text, 'podwire_phases_total', { ...step, status: 'error' })).toBe(1);
    expect(sample(text, 'podwire_phases_total', { ...step, status: 'ok' })).toBe(ipam.length - 1);
    // A step that never failed in these recordings still has its error series, at 0.
    expect(
      sample(text, 'podwire_phases_total', {
        kind: 'handshake',
        phase: 'veth create',
        plugin: 'bridge',
        status: 'error',
      }),
    ).toBe(0);
  });

  it("counts the daemon's own losses", () => {
    expect(sample(text, 'podwire_events_lost_total', { source: 'kernel' })).toBe(7);
    expect(sample(text, 'podwire_events_late_total', { source: 'kernel' })).toBe(3);
    expect(sample(text, 'podwire_probe_restarts_total', { source: 'kernel' })).toBe(1);
    expect(sample(text, 'podwire_spans_dropped_total', { reason: 'queue-full' })).toBe(0);
  });

  it('exports every metric the Grafana dashboard queries', () => {
    expect(dashboardMetricsMissingFrom(text)).toEqual([]);
  });
});

describe('--metrics [HOST:]PORT', () => {
  it('binds 127.0.0.1 for a bare port, takes a host or [IPv6] before it, and says what is wrong otherwise', () => {
    expect(parseListenAddress('9464')).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseListenAddress('0.0.0.0:9464')).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(parseListenAddress('[::1]:9464')).toEqual({ host: '::1', port: 9464 });
    for (const bad of ['', 'abc', '70000', '0', ':9464', 'host:'])
      expect((parseListenAddress(bad) as { error: string }).error).toMatch(
        /--metrics .* is not \[HOST:\]PORT/,
      );
  });

  it('refuses a port that is taken, in one line naming the fix', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const started = await startTelemetry({
        metrics: { host: '127.0.0.1', port },
        status: () => {},
      });
      expect((started as { error: string }).error).toMatch(
        new RegExp(
          `cannot serve metrics on 127.0.0.1:${port}: .*EADDRINUSE.*choose another --metrics`,
        ),
      );
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('/ready on the metrics port (the DaemonSet readiness probe)', () => {
  it('answers 503 until the probes are attached, 200 then, 503 with the reason while a probe program is down', async () => {
    const started = await startTelemetry({
      metrics: { host: '127.0.0.1', port: await freePort() },
      status: () => {},
    });
    if ('error' in started) throw new Error(started.error);
    const ready = (started.metricsUrl as string).replace(/\/metrics$/, '/ready');
    const ask = async (url = ready) => {
      const response = await fetch(url);
      return `${response.status} ${(await response.text()).trim()}`;
    };
    try {
      const sink = new MetricsSink(started);
      expect(await ask()).toBe('503 not ready: the probes are being attached');
      const said = (state: 'ready' | 'probe-failed' | 'probe-restarted', message: string) =>
        sink.write({ kind: 'status', state, time: '', message, source: 'kernel' });
      said('ready', 'tracing');
      expect(await ask()).toBe('200 ready');
      said('probe-failed', 'kernel: bpftrace exited with status 1');
      expect(await ask()).toBe('503 not ready: kernel: bpftrace exited with status 1');
      said('probe-restarted', 'kernel: probes attached again');
      expect(await ask()).toBe('200 ready');
      expect(await ask(ready.replace(/\/ready$/, '/other'))).toMatch(/^404 /);
      // /metrics is still the exporter's (what it holds is tested above: one SDK per process).
      expect(await ask(started.metricsUrl as string)).toMatch(/^200 # HELP /);
    } finally {
      await started.shutdown();
    }
    // The port is free again once podwire stopped.
    await expect(fetch(ready)).rejects.toThrow();
  });
});
