// podwire trace on the real lab: every pod the kubelet-like client creates gets one record that agrees with CRI and `ip`.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandshakeRecord, PhaseRecord } from '../src/correlate/record.js';
import { labPaths } from '../src/lab/paths.js';
import { defaultPollMs } from '../src/probes/runner.js';
import { requireSuite, sidContainerd, trixieContainerd } from './binaries/suites.js';
import { bridgeHandshakeSteps } from './correlate/recordings.js';
import { dashboardMetricsMissingFrom } from './dashboards/queries.js';
import {
  bridge,
  freePort,
  hostLinks,
  type IpLink,
  ip,
  isRoot,
  labUpWithTinyRange,
  noLabUp,
  podwire,
  rootReason,
  running,
} from './lab/node.js';
import {
  type Created,
  childrenOf,
  createPods,
  endTracedLab,
  oneMorePod,
  Trace,
  tracedLab,
} from './lab/traced.js';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from './otel/otlp-receiver.js';
import { sample } from './otel/prometheus.js';
import {
  byTrace,
  expectJaegerMatchesOtlp,
  expectTraceOfRecord,
  type JaegerSpan,
  traceOf,
} from './otel/traces.js';

const phase = (record: HandshakeRecord, name: string) => record.phases.find((p) => p.name === name);
const required = ['cri RunPodSandbox', ...bridgeHandshakeSteps];

describe.skipIf(!isRoot)(
  `podwire trace on the lab${isRoot ? '' : ` (skipped: ${rootReason})`}`,
  () => {
    // Made in beforeAll, not here: a run that filters this describe out leaves nothing in /tmp.
    let scratch = '';
    let recording = '';
    let plugins = '';
    let liveJaeger = '';
    let trace: Trace;
    let created: Created;
    let collector: OtlpReceiver;
    let metricsPort: number;

    beforeAll(async () => {
      await noLabUp();
      scratch = mkdtempSync(join(tmpdir(), 'podwire-trace-test-'));
      recording = join(scratch, 'run.ndjson');
      plugins = join(scratch, 'plugins');
      liveJaeger = join(scratch, 'live.jaeger.json');
      // A CNI bin dir of the test's own besides Debian's: a plugin is installed there while tracing.
      mkdirSync(plugins, { recursive: true });
      collector = await startOtlpReceiver('http/protobuf');
      metricsPort = await freePort();
      trace = await tracedLab([], recording, [
        '--cni-bin-dir',
        '/usr/lib/cni',
        '--cni-bin-dir',
        plugins,
        '--otlp',
        collector.endpoint,
        '--metrics',
        String(metricsPort),
        '--jaeger-json',
        liveJaeger,
      ]);
    });

    afterAll(async () => {
      await endTracedLab(trace, recording, 'trace-lab');
      await collector?.close();
      if (scratch) rmSync(scratch, { recursive: true, force: true });
    });

    it('says it is ready only after every probe is attached, and names the runtime it found', () => {
      const statuses = trace.lines.filter((l) => l.kind === 'status');
      expect(
        statuses.some((s) => s.state === 'runtime-found' && /containerd/.test(s.message)),
      ).toBe(true);
      expect(
        trace.lines.findIndex((l) => l.kind === 'status' && l.state === 'ready'),
      ).toBeGreaterThanOrEqual(0);
      expect(trace.records('handshake')).toEqual([]);
    });

    it('has bpftrace read its buffers on a timer (bpftrace-poll.so, built by npm run build), not woken for each event', () => {
      const ready = trace.lines.find((l) => l.kind === 'status' && l.state === 'ready') as
        | { message: string; bpftraceWakeups?: string }
        | undefined;
      expect(ready?.bpftraceWakeups, ready?.message).toBe(
        `reads its buffers every ${defaultPollMs} ms`,
      );
    });

    it("probes the plugins' netlink and stdout in their own code, not at the system-wide syscalls", () => {
      const where = trace.lines.find((l) => l.kind === 'status' && l.state === 'plugin-probes') as
        | { message: string; mode: string; plugins: string[] }
        | undefined;
      expect(where?.mode, where?.message).toBe('uprobes');
      // Only the plugins the lab's network config names, and loopback: not every file in the bin dirs.
      expect(where?.plugins).toEqual([
        '/usr/lib/cni/bridge',
        '/usr/lib/cni/host-local',
        '/usr/lib/cni/loopback',
      ]);
    });

    it('gives exactly one handshake per pod for 10 pods created 5 at a time, agreeing with CRI and ip', async () => {
      const result = await podwire(
        'lab',
        'pods',
        'create',
        '--count',
        '10',
        '--parallel',
        '5',
        '--json',
      );
      expect(result.code, result.stderr).toBe(0);
      created = JSON.parse(result.stdout) as Created;
      await trace.waitFor('10 handshakes', () => trace.records('handshake').length >= 10);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const records = trace.records('handshake');
      expect(records).toHaveLength(10);
      const links = await hostLinks();
      for (const pod of created.pods) {
        const record = records.find((r) => r.sandboxId === pod.sandboxId) as HandshakeRecord;
        expect(record, `a record for ${pod.name}`).toBeDefined();
        expect(record.outcome, JSON.stringify(record.error)).toBe('ok');
        expect(record.pod).toEqual({ namespace: pod.namespace, name: pod.name, uid: pod.uid });
        expect(record.podIP?.split('/')[0], 'the IP PodSandboxStatus reports').toBe(pod.ip);
        expect(record.netns).toBe(pod.netns);
        // The host veth podwire names is enslaved to the lab bridge, and its peer is eth0 in this pod's netns.
        const host = links.find((link) => link.ifname === record.hostVeth) as IpLink;
        expect(host?.master, `${record.hostVeth} on ${bridge}`).toBe(bridge);
        const [eth0] = (await ip(
          '-n',
          (pod.netns ?? '').split('/').pop() ?? '',
          '-d',
          'link',
          'show',
          'eth0',
        )) as IpLink[];
        expect(eth0?.link_index, 'eth0 peer is the host veth').toBe(host.ifindex);
        expect(record.podInterface).toBe('eth0');
        const root = phase(record, 'cri RunPodSandbox') as PhaseRecord;
        for (const name of required) {
          const seen = phase(record, name);
          expect(seen, `${pod.name}: ${name}`).toBeDefined();
          // sandbox start ends when the sandbox's process execs, which can come after RunPodSandbox returned.
          expect(
            (seen as PhaseRecord).start >= root.start &&
              (name === 'sandbox start' || ((seen as PhaseRecord).end ?? '') <= (root.end ?? '')),
            `${name} inside RunPodSandbox`,
          ).toBe(true);
        }
      }
    });

    it('gives one teardown per deleted pod', async () => {
      const deleted = await podwire('lab', 'pods', 'delete', '--all');
      expect(deleted.code, deleted.stderr).toBe(0);
      await trace.waitFor('10 teardowns', () => trace.records('teardown').length >= 10);
      const teardowns = trace.records('teardown');
      expect(teardowns).toHaveLength(10);
      expect(teardowns.map((t) => t.sandboxId).sort()).toEqual(
        created.pods.map((p) => p.sandboxId).sort(),
      );
      for (const record of teardowns) {
        expect(record.outcome).toBe('ok');
        expect(record.phases.map((p) => p.name)).toEqual(
          expect.arrayContaining([
            'cri StopPodSandbox',
            'cni DEL bridge',
            'netns delete',
            'cri RemovePodSandbox',
          ]),
        );
      }
    });

    it('restarts a bpftrace that dies, says so, and goes on tracing', async () => {
      // The bpftrace this test's tracer started: a child of that pid, ended by its own pid.
      const children = childrenOf(trace.pid).filter((child) => child.comm === 'bpftrace');
      expect(children).toHaveLength(1);
      process.kill((children[0] as { pid: number }).pid, 'SIGKILL');
      const statuses = () =>
        trace.lines.filter((l) => l.kind === 'status') as { state: string; message: string }[];
      await trace.waitFor('a probe-failed status', () =>
        statuses().some((s) => s.state === 'probe-failed'),
      );
      await trace.waitFor('a probe-restarted status', () =>
        statuses().some((s) => s.state === 'probe-restarted'),
      );
      expect((await oneMorePod(trace, 'after the restart')).outcome).toBe('ok');
      expect((await podwire('lab', 'pods', 'delete', '--all')).code).toBe(0);
    });

    it('sees a plugin installed while it runs: attaches again, at the syscalls for a plugin that is not Go, and goes on tracing', async () => {
      const statuses = () =>
        trace.lines.filter((l) => l.kind === 'status') as {
          state: string;
          message: string;
          mode?: string;
        }[];
      const seen = statuses().length;
      writeFileSync(join(plugins, 'shell-plugin'), '#!/bin/sh\necho "{}"\n', { mode: 0o755 });
      // podwire probes the plugins a network config names: a config after the lab's (containerd loads the first).
      writeFileSync(
        join(labPaths().cniConfDir, '99-shell.conf'),
        JSON.stringify({ cniVersion: '1.0.0', name: 'shell', type: 'shell-plugin' }),
      );
      await trace.waitFor(
        'a plugins-changed status and the kernel probes attached again',
        () => {
          const later = statuses().slice(seen);
          const changed = later.findIndex((s) => s.state === 'plugins-changed');
          return changed >= 0 && later.slice(changed).some((s) => s.state === 'probe-restarted');
        },
        40_000,
      );
      const later = statuses().slice(seen);
      const where = later.find((s) => s.state === 'plugin-probes');
      expect(where?.mode).toBe('syscalls');
      expect(where?.message).toMatch(/shell-plugin: not an ELF executable/);
      const record = await oneMorePod(trace, 'after the reload');
      expect(record.outcome).toBe('ok');
      for (const name of required) expect(phase(record, name), name).toBeDefined();
      expect((await podwire('lab', 'pods', 'delete', '--all')).code).toBe(0);
      // The config gone, the plugin is no longer probed: the lab's own plugins, in their own code again.
      const before = statuses().length;
      rmSync(join(labPaths().cniConfDir, '99-shell.conf'));
      await trace.waitFor(
        'the kernel probes attached again without shell-plugin',
        () =>
          statuses()
            .slice(before)
            .some((s) => s.state === 'probe-restarted'),
        40_000,
      );
      expect(
        statuses()
          .slice(before)
          .find((s) => s.state === 'plugin-probes')?.mode,
      ).toBe('uprobes');
    });

    it('reports the pod that gets no address as failed, naming the plugin and its message, the others ok', async () => {
      expect((await podwire('lab', 'down')).code).toBe(0);
      expect((await labUpWithTinyRange(scratch)).code).toBe(0);
      const before = trace.records('handshake').length;
      const result = await podwire(
        'lab',
        'pods',
        'create',
        '--count',
        '3',
        '--parallel',
        '1',
        '--json',
      );
      const pods = (JSON.parse(result.stdout) as Created).pods;
      await trace.waitFor(
        '3 more handshakes',
        () => trace.records('handshake').length >= before + 3,
      );
      const records = trace.records('handshake').slice(before);
      // The lab's containerd was stopped and started again: its CRI probes stayed in the binary, so even
      // the first pods after the start have their RunPodSandbox call.
      for (const record of records) expect(phase(record, 'cri RunPodSandbox')).toBeDefined();
      expect(records.filter((r) => r.outcome === 'ok')).toHaveLength(2);
      const failed = records.find((r) => r.outcome === 'failed') as HandshakeRecord;
      expect(failed.pod.name).toBe(pods.find((p) => p.error)?.name);
      expect(failed.error?.phase).toBe('ipam host-local');
      expect(failed.error?.message).toMatch(/no IP addresses available/);
    });

    it('serves the metrics of this run: counts by outcome, latency histograms, probe restarts, all the dashboard needs', async () => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      for (const outcome of ['ok', 'failed', 'incomplete']) {
        const count = (kind: 'handshake' | 'teardown') =>
          trace.records(kind).filter((r) => r.outcome === outcome).length;
        expect(sample(text, 'podwire_handshakes_total', { outcome }), outcome).toBe(
          count('handshake'),
        );
        expect(sample(text, 'podwire_teardowns_total', { outcome }), outcome).toBe(
          count('teardown'),
        );
      }
      const ok = trace.records('handshake').filter((r) => r.outcome === 'ok');
      expect(
        sample(text, 'podwire_handshake_duration_seconds_count', {
          outcome: 'ok',
          runtime: 'containerd',
          primary_plugin: 'bridge',
        }),
      ).toBe(ok.length);
      expect(
        sample(text, 'podwire_phase_duration_seconds_count', {
          kind: 'handshake',
          phase: 'ipam host-local',
          plugin: 'host-local',
          status: 'error',
        }),
      ).toBe(1);
      const restarts = trace.lines.filter(
        (l) => l.kind === 'status' && l.state === 'probe-restarted',
      );
      expect(sample(text, 'podwire_probe_restarts_total', { source: 'kernel' })).toBe(
        restarts.length,
      );
      expect(dashboardMetricsMissingFrom(text)).toEqual([]);
    });

    it('stops cleanly on a Ctrl-C, and a replay of its recording gives the same records', async () => {
      const jaeger = join(scratch, 'replay.jaeger.json');
      const before = trace.lines.length;
      expect(await trace.stop({ likeCtrlC: true })).toBe(0);
      // The SIGINT reached the daemon alone: it ended bpftrace and the CRI reader itself, none died by itself.
      const stopping = trace.lines.slice(before).filter((l) => l.kind === 'status');
      expect(stopping.filter((l) => l.state.startsWith('probe-'))).toEqual([]);
      expect(stopping.at(-1)?.state).toBe('stopped');
      // Its janitor removes the CRI probes once it has exited: the kernel takes a few seconds for them.
      const events = () => readFileSync('/sys/kernel/tracing/uprobe_events', 'utf8');
      for (let waited = 0; /podwire_/.test(events()) && waited < 10_000; waited += 100)
        await new Promise((resolve) => setTimeout(resolve, 100));
      expect(events()).not.toMatch(/podwire_/);
      const replayed = await new Promise<string>((resolve, reject) => {
        const child = spawn(
          'node',
          ['dist/src/cli.js', 'replay', recording, '--json', '--jaeger-json', jaeger],
          {
            stdio: ['ignore', 'pipe', 'inherit'],
          },
        );
        let out = '';
        child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
        child.once('exit', (code) =>
          code === 0 ? resolve(out) : reject(new Error(`replay exited ${code}`)),
        );
      });
      const records = (text: string) =>
        text.split('\n').filter((l) => l.trim() && !l.includes('"kind":"status"'));
      const live = trace.lines.filter((l) => l.kind !== 'status').map((l) => JSON.stringify(l));
      expect(records(replayed)).toEqual(live);
      // The same run as a file Jaeger's UI opens: one trace per record, named by its pod.
      const traces = (
        JSON.parse(readFileSync(jaeger, 'utf8')) as {
          data: { spans: { tags: { key: string; value: unknown }[] }[] }[];
        }
      ).data;
      expect(traces).toHaveLength(live.length);
      const podNames = traces.map(
        (t) => t.spans[0]?.tags.find((tag) => tag.key === 'k8s.pod.name')?.value,
      );
      expect(podNames).toEqual(
        trace.lines.filter((l) => l.kind !== 'status').map((l) => (l as HandshakeRecord).pod.name),
      );
    });

    it('sent every record to the collector as one trace, the same spans as its Jaeger file', () => {
      const records = trace.lines.filter((l): l is HandshakeRecord => l.kind !== 'status');
      expect(byTrace(collector.spans).size).toBe(records.length);
      for (const record of records) expectTraceOfRecord(record, traceOf(record, collector.spans));
      const file = JSON.parse(readFileSync(liveJaeger, 'utf8')) as {
        data: { spans: JaegerSpan[] }[];
      };
      expectJaegerMatchesOtlp(
        file.data.flatMap((t) => t.spans),
        collector.spans,
      );
      expect(trace.lines.filter((l) => l.kind === 'status' && l.state === 'export-failed')).toEqual(
        [],
      );
    });
  },
);

// On the lab's default containerd (Debian's 1.6): what must hold whatever runtime version the node runs.
describe.skipIf(!isRoot)(
  `podwire trace through a collector outage and a kill -9, on the lab's containerd 1.6${isRoot ? '' : ` (skipped: ${rootReason})`}`,
  () => {
    let trace: Trace;
    let scratch = '';
    // The lab's containerd runs with this in its environment, which it hands on to every CNI plugin, as a
    // runtime with tracing on passes its span to them.
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    let collectorPort: number;
    let collector: OtlpReceiver | null = null;

    beforeAll(async () => {
      await noLabUp();
      scratch = mkdtempSync(join(tmpdir(), 'podwire-trace-faults-test-'));
      // No collector listens there yet: it comes up later in the run.
      collectorPort = await freePort();
      trace = await tracedLab(
        [],
        join(scratch, 'run.ndjson'),
        ['--plugin-probes', 'syscalls', '--otlp', `http://127.0.0.1:${collectorPort}`],
        {
          labEnv: { TRACEPARENT: traceparent },
          // The exporter gives up on an unreachable collector within 2 s instead of 10 s.
          traceEnv: { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_TIMEOUT: '2000' },
        },
      );
    });

    afterAll(async () => {
      await endTracedLab(trace, join(scratch, 'run.ndjson'), 'trace-lab-faults');
      await collector?.close();
      if (scratch) rmSync(scratch, { recursive: true, force: true });
    });

    it('goes on tracing while the collector is down, holds what it could not send, and delivers it once it is up', async () => {
      const statuses = () =>
        trace.lines.filter((l) => l.kind === 'status') as {
          state: string;
          message: string;
          droppedTotal?: number;
        }[];
      // Records for the exporter to fail on: three pods created and deleted while no collector listens.
      const created = await podwire('lab', 'pods', 'create', '--count', '3', '--json');
      expect(created.code, created.stderr).toBe(0);
      await trace.waitFor('3 handshakes', () => trace.records('handshake').length >= 3);
      expect((await podwire('lab', 'pods', 'delete', '--all')).code).toBe(0);
      await trace.waitFor('an export-failed status', () =>
        statuses().some((s) => s.state === 'export-failed'),
      );
      const failed = statuses().find((s) => s.state === 'export-failed');
      expect(failed?.message).toContain(`127.0.0.1:${collectorPort}`);
      // The spans wait in the export queue to be sent again (drops, when it overflows: collector.lab.test.ts).
      collector = await startOtlpReceiver('grpc', { port: collectorPort });
      const earlier = (JSON.parse(created.stdout) as Created).pods.map((pod) => pod.name);
      await trace.waitFor(
        'the pods of the outage in the collector',
        () =>
          earlier.every((name) =>
            (collector as OtlpReceiver).spans.some(
              (s) => s.attributes['k8s.pod.name'] === name && s.name === 'pod network handshake',
            ),
          ),
        60_000,
      );
      const record = await oneMorePod(trace, 'while the collector is up');
      expect(record.outcome).toBe('ok');
      expect(record.traceparent).toBe(traceparent);
      // The runtime's trace holds every pod of this lab (one TRACEPARENT for all): find this pod's root in it.
      const rootOfPod = () =>
        (collector as OtlpReceiver).spans.find(
          (s) =>
            s.attributes['k8s.pod.name'] === record.pod.name && s.name === 'pod network handshake',
        );
      // The gRPC channel may still be backing off from the refused connections: give it time.
      await trace.waitFor('the new pod in the collector', () => rootOfPod() !== undefined, 60_000);
      const root = rootOfPod() as ReceivedSpan;
      expect(root, 'the new pod arrived').toBeDefined();
      expect(root.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
      expect(root.parentSpanId).toBe('00f067aa0ba902b7');
      const subtree = (top: ReceivedSpan): ReceivedSpan[] => [
        top,
        ...(collector as OtlpReceiver).spans
          .filter((s) => s.parentSpanId === top.spanId)
          .flatMap(subtree),
      ];
      expectTraceOfRecord(record, subtree(root));
      await trace.waitFor('an export-resumed status', () =>
        statuses().some((s) => s.state === 'export-resumed'),
      );
      expect((await podwire('lab', 'pods', 'delete', '--all')).code).toBe(0);
    });

    it('killed with -9 (an OOM kill), leaves no bpftrace or reader behind, and the next podwire starts and traces', async () => {
      const children = childrenOf(trace.pid);
      // bpftrace, its trace_pipe reader, the janitor (a shell) that removes the CRI probes after it, and the
      // watcher of its stdout's reader.
      expect(children.map((child) => child.comm).sort()).toEqual([
        'bpftrace',
        'cat',
        'sh',
        'stdout-watch',
      ]);
      const killed = trace.pid;
      process.kill(killed, 'SIGKILL');
      await trace.exitCode;
      const deadline = Date.now() + 10_000;
      while (children.some((child) => running(child.pid)) && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 100));
      expect(children.filter((child) => running(child.pid))).toEqual([]);
      // Its janitor removed what it placed in tracefs, without waiting for another podwire.
      expect(
        readFileSync('/sys/kernel/tracing/uprobe_events', 'utf8').includes(`p:podwire_${killed}_`),
      ).toBe(false);
      // The next daemon, as a DaemonSet restarts it, finds nothing left to clear, and traces.
      trace = new Trace(join(scratch, 'after-kill.ndjson'), ['--plugin-probes', 'syscalls']);
      await trace.waitFor('the ready status', () =>
        trace.lines.some((l) => l.kind === 'status' && l.state === 'ready'),
      );
      const statuses = trace.lines.filter((l) => l.kind === 'status').map((l) => l.message);
      expect(statuses.filter((m) => /left by a podwire that died/.test(m))).toEqual([]);
      expect(
        readdirSync(tmpdir()).filter((entry) => entry.startsWith(`podwire-probe-${killed}-`)),
      ).toEqual([]);
      const record = await oneMorePod(trace, 'after the restart');
      expect(record.outcome).toBe('ok');
      expect(phase(record, 'cri RunPodSandbox')).toBeDefined();
      expect((await podwire('lab', 'pods', 'delete', '--all')).code).toBe(0);
    });
  },
);

// Needs containerd 2.x from Debian sid: fails, with the reason, when scripts/fetch-containerd.sh could not fetch it.
describe.skipIf(!isRoot)(
  `podwire trace on a lab running containerd 2.x${isRoot ? '' : ` (skipped: ${rootReason})`}`,
  () => {
    let trace: Trace;
    let scratch = '';

    beforeAll(async () => {
      requireSuite('sid');
      await noLabUp();
      scratch = mkdtempSync(join(tmpdir(), 'podwire-trace2-test-'));
      // The fallback for plugins podwire cannot probe in their own code, on the real stack too.
      trace = await tracedLab(
        ['--containerd', `${process.cwd()}/${sidContainerd}`],
        join(scratch, 'run.ndjson'),
        ['--plugin-probes', 'syscalls'],
      );
    });

    afterAll(async () => {
      // Nothing was started when containerd 2.x is missing: the lab of the next describe must not be brought down.
      if (!scratch) return;
      await endTracedLab(trace, join(scratch, 'run.ndjson'), 'trace-lab2');
      rmSync(scratch, { recursive: true, force: true });
    });

    it('finds the 2.x runtime, reads its CRI calls and gives full handshakes and teardowns (plugins probed at the syscalls)', async () => {
      const where = trace.lines.find((l) => l.kind === 'status' && l.state === 'plugin-probes');
      expect((where as { mode?: string } | undefined)?.mode).toBe('syscalls');
      const found = trace.lines.find((l) => l.kind === 'status' && l.state === 'runtime-found');
      expect((found as { message: string }).message).toMatch(/containerd 2\.\d+/);
      const result = await podwire(
        'lab',
        'pods',
        'create',
        '--count',
        '3',
        '--parallel',
        '3',
        '--json',
      );
      expect(result.code, result.stderr).toBe(0);
      const pods = (JSON.parse(result.stdout) as Created).pods;
      await trace.waitFor('3 handshakes', () => trace.records('handshake').length >= 3);
      for (const pod of pods) {
        const record = trace
          .records('handshake')
          .find((r) => r.sandboxId === pod.sandboxId) as HandshakeRecord;
        expect(record?.outcome).toBe('ok');
        expect(record.pod).toEqual({ namespace: pod.namespace, name: pod.name, uid: pod.uid });
        expect(record.podIP?.split('/')[0]).toBe(pod.ip);
        for (const name of required)
          expect(phase(record, name), `${pod.name}: ${name}`).toBeDefined();
      }
      expect((await podwire('lab', 'pods', 'delete', '--all')).code).toBe(0);
      await trace.waitFor('3 teardowns', () => trace.records('teardown').length >= 3);
      for (const record of trace.records('teardown')) {
        expect(record.phases.map((p) => p.name)).toEqual(
          expect.arrayContaining(['cri StopPodSandbox', 'cni DEL bridge', 'cri RemovePodSandbox']),
        );
      }
    });
  },
);

// Needs containerd 1.7 from Debian trixie: fails, with the reason, when scripts/fetch-containerd.sh could not fetch it.
describe.skipIf(!isRoot)(
  `podwire trace on a lab running containerd 1.7${isRoot ? '' : ` (skipped: ${rootReason})`}`,
  () => {
    let trace: Trace;
    let scratch = '';

    beforeAll(async () => {
      requireSuite('trixie');
      await noLabUp();
      scratch = mkdtempSync(join(tmpdir(), 'podwire-trace17-test-'));
      trace = await tracedLab(
        ['--containerd', `${process.cwd()}/${trixieContainerd}`],
        join(scratch, 'run.ndjson'),
      );
    });

    afterAll(async () => {
      // Nothing was started when containerd 1.7 is missing: the lab of the next describe must not be brought down.
      if (!scratch) return;
      await endTracedLab(trace, join(scratch, 'run.ndjson'), 'trace-lab17');
      rmSync(scratch, { recursive: true, force: true });
    });

    const said = (state: string, message: RegExp) =>
      trace.lines.some((l) => l.kind === 'status' && l.state === state && message.test(l.message));

    /** `count` pods created at once, then deleted: each gets one handshake that agrees with CRI and ip, and a teardown. */
    async function expectTracedExactly(count: number): Promise<void> {
      const handshakesBefore = trace.records('handshake').length;
      const teardownsBefore = trace.records('teardown').length;
      const pods = await createPods(count, count);
      await trace.waitFor(
        `${count} handshakes`,
        () => trace.records('handshake').length >= handshakesBefore + count,
      );
      const records = trace.records('handshake').slice(handshakesBefore);
      expect(records).toHaveLength(count);
      const links = await hostLinks();
      for (const pod of pods) {
        const record = records.find((r) => r.sandboxId === pod.sandboxId) as HandshakeRecord;
        expect(record, `a record for ${pod.name}`).toBeDefined();
        expect(record.outcome, JSON.stringify(record.error)).toBe('ok');
        expect(record.pod).toEqual({ namespace: pod.namespace, name: pod.name, uid: pod.uid });
        expect(record.podIP?.split('/')[0]).toBe(pod.ip);
        expect(record.netns).toBe(pod.netns);
        expect(links.find((link) => link.ifname === record.hostVeth)?.master).toBe(bridge);
        expect(record.podInterface).toBe('eth0');
        for (const name of required)
          expect(phase(record, name), `${pod.name}: ${name}`).toBeDefined();
      }
      expect((await podwire('lab', 'pods', 'delete', '--all')).code).toBe(0);
      await trace.waitFor(
        `${count} teardowns`,
        () => trace.records('teardown').length >= teardownsBefore + count,
      );
      const teardowns = trace.records('teardown').slice(teardownsBefore);
      expect(teardowns.map((t) => t.sandboxId).sort()).toEqual(pods.map((p) => p.sandboxId).sort());
      for (const record of teardowns) {
        expect(record.outcome).toBe('ok');
        expect(record.phases.map((p) => p.name)).toEqual(
          expect.arrayContaining([
            'cri StopPodSandbox',
            'cni DEL bridge',
            'netns delete',
            'cri RemovePodSandbox',
          ]),
        );
      }
    }

    it('finds the 1.7 runtime, reads its CRI calls and gives exact handshakes and teardowns (plugins probed in their own code)', async () => {
      const where = trace.lines.find((l) => l.kind === 'status' && l.state === 'plugin-probes');
      expect((where as { mode?: string } | undefined)?.mode).toBe('uprobes');
      expect(said('runtime-found', /^containerd 1\.7\.\d+\S* at .*: 5 CRI methods probed$/)).toBe(
        true,
      );
      await expectTracedExactly(3);
    });

    it('traces it as exactly once it serves CRI through its other server (restarted with ENABLE_CRI_SANDBOXES)', async () => {
      process.env.ENABLE_CRI_SANDBOXES = '1';
      let restart: Awaited<ReturnType<typeof podwire>>;
      try {
        restart = await podwire('lab', 'restart');
      } finally {
        delete process.env.ENABLE_CRI_SANDBOXES;
      }
      expect(restart.code, restart.stderr).toBe(0);
      expect(readFileSync(labPaths().containerdLog, 'utf8')).toMatch(
        /using experimental CRI Sandbox server/,
      );
      // The same binary: its CRI probes stay, and the first pods after the start already have their calls.
      await expectTracedExactly(2);
    });
  },
);
