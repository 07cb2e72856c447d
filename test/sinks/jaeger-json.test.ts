// The Jaeger trace file from real recordings: what Jaeger's UI needs to open it (docs/records.md), and what a user
// checks in it — one trace per record, the tree, the times, the pod's attributes, the failure.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import { JaegerJsonSink, jaegerTrace } from '../../src/sinks/jaeger-json.js';
import { readRecording, replay } from '../correlate/recordings.js';
import type { JaegerSpan as Span, JaegerTrace as Trace } from '../otel/traces.js';

const scratch = mkdtempSync(join(tmpdir(), 'podwire-jaeger-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

async function jaegerFile(records: HandshakeRecord[], name: string): Promise<Trace[]> {
  const file = join(scratch, name);
  const sink = new JaegerJsonSink(file, 'node-1');
  sink.write({ kind: 'status', state: 'ready', time: '', message: 'not a trace' });
  for (const record of records) sink.write(record);
  await sink.close();
  return (JSON.parse(readFileSync(file, 'utf8')) as { data: Trace[] }).data;
}

const tagOf = (span: Span | undefined, key: string) => span?.tags.find((t) => t.key === key)?.value;
const recorded = (file: string) => {
  const { header, lines } = readRecording(file);
  return replay(header, lines);
};

describe('the Jaeger file of ten real pods created and deleted', async () => {
  const records = recorded('ten-pods-plugin-uprobes.ndjson');
  const traces = await jaegerFile(records, 'ten-pods.json');

  it('holds one trace per handshake and teardown, each span carrying its trace id, one process', () => {
    expect(traces).toHaveLength(records.length);
    expect(new Set(traces.map((t) => t.traceID)).size).toBe(records.length);
    traces.forEach((trace, i) => {
      const record = records[i] as HandshakeRecord;
      expect(trace.spans).toHaveLength(record.phases.length + 1);
      for (const span of trace.spans) {
        expect(span.traceID).toBe(trace.traceID);
        expect(span.processID).toBe('p1');
        expect(Number.isInteger(span.startTime) && Number.isInteger(span.duration)).toBe(true);
        for (const tag of span.tags) expect(tag.key).toBeTruthy();
      }
      expect(trace.processes.p1?.serviceName).toBe('podwire');
      expect(trace.processes.p1?.tags).toContainEqual({
        key: 'k8s.node.name',
        type: 'string',
        value: 'node-1',
      });
    });
  });

  it('nests as the record does: every reference resolves in its trace, children inside their parent in time', () => {
    traces.forEach((trace, i) => {
      const record = records[i] as HandshakeRecord;
      const byId = new Map(trace.spans.map((span) => [span.spanID, span]));
      const root = trace.spans[0] as Span;
      expect(root.operationName).toBe(
        record.kind === 'handshake' ? 'pod network handshake' : 'pod network teardown',
      );
      expect(root.references).toEqual([]);
      record.phases.forEach((phase, p) => {
        const span = trace.spans[p + 1] as Span;
        expect(span.operationName).toBe(phase.name);
        expect(span.references).toHaveLength(1);
        const parent = byId.get(span.references[0]?.spanID ?? '') as Span;
        expect(parent, `${phase.name}: its parent is in the trace`).toBeDefined();
        expect(parent.operationName).toBe(
          phase.parentId === null ? root.operationName : record.phases[phase.parentId]?.name,
        );
        expect(span.startTime).toBeGreaterThanOrEqual(parent.startTime);
        // sandbox start ends when the sandbox's process execs, which can come after RunPodSandbox returned.
        if (phase.name !== 'sandbox start')
          expect(span.startTime + span.duration).toBeLessThanOrEqual(
            parent.startTime + parent.duration,
          );
      });
    });
  });

  it("names the pod and the sandbox on the root, keeps each phase's attributes, and the kernel's times", () => {
    const handshake = records.find((r) => r.kind === 'handshake') as HandshakeRecord;
    const trace = traces[records.indexOf(handshake)] as Trace;
    const root = trace.spans[0];
    expect(tagOf(root, 'k8s.pod.name')).toBe(handshake.pod.name);
    expect(tagOf(root, 'k8s.namespace.name')).toBe(handshake.pod.namespace);
    expect(tagOf(root, 'k8s.pod.uid')).toBe(handshake.pod.uid);
    expect(tagOf(root, 'container.id')).toBe(handshake.sandboxId);
    expect(tagOf(root, 'podwire.pod_ip')).toBe(handshake.podIP);
    expect(tagOf(root, 'podwire.host_veth')).toBe(handshake.hostVeth);
    expect(tagOf(root, 'error')).toBeUndefined();
    const veth = trace.spans.find((s) => s.operationName === 'veth create');
    expect(tagOf(veth, 'network.interface.name')).toBe('eth0');
    expect(tagOf(veth, 'podwire.netlink.errno')).toBe(0);
    // Microseconds of the record's own nanosecond times.
    const start = handshake.start;
    const micros = Date.parse(`${start.slice(0, 19)}Z`) * 1000 + Number(start.slice(20, 26));
    expect(root?.startTime).toBe(micros);
    expect(Math.abs((root?.duration ?? 0) / 1000 - handshake.durationMs)).toBeLessThan(0.002);
    for (const deviation of handshake.deviations)
      expect(
        root?.logs.map((log) => tagOf({ tags: log.fields } as Span, 'podwire.deviation')),
      ).toContain(deviation);
  });

  it('is the same file every time: ids come from the records, so a replay gives the same traces', async () => {
    expect(await jaegerFile(records, 'again.json')).toEqual(traces);
  });
});

describe('the Jaeger file of a pod whose IPAM range ran out (real recording)', async () => {
  const records = recorded('ipam-exhausted.ndjson').filter((r) => r.kind === 'handshake');
  const traces = await jaegerFile(records, 'ipam.json');

  it('marks the failing step and every span above it as an error, with the message in an exception log', () => {
    const failed = traces[records.findIndex((r) => r.outcome === 'failed')] as Trace;
    const errored = failed.spans
      .filter((s) => tagOf(s, 'error') === true)
      .map((s) => s.operationName);
    expect(errored.sort()).toEqual(
      ['cni ADD bridge', 'cri RunPodSandbox', 'ipam host-local', 'pod network handshake'].sort(),
    );
    const ipam = failed.spans.find((s) => s.operationName === 'ipam host-local') as Span;
    expect(String(tagOf(ipam, 'otel.status_description'))).toMatch(/no IP addresses available/);
    const exception = ipam.logs[0]?.fields ?? [];
    expect(exception).toContainEqual({ key: 'event', type: 'string', value: 'exception' });
    expect(String(exception.find((f) => f.key === 'exception.message')?.value)).toMatch(
      /no IP addresses available/,
    );
    for (const ok of traces.filter((t) => t !== failed))
      expect(ok.spans.filter((s) => tagOf(s, 'error') !== undefined)).toEqual([]);
  });
});

describe('a handshake whose runtime passed a TRACEPARENT to the plugins', async () => {
  // The lab's containerd does not trace, so a real record is given the TRACEPARENT a tracing runtime would pass.
  const record = recorded('ten-pods.ndjson').find((r) => r.kind === 'handshake') as HandshakeRecord;
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const [trace] = await jaegerFile([{ ...record, traceparent }], 'traceparent.json');

  it("joins the runtime's trace: its trace id, the runtime's span named on the root", () => {
    expect(trace?.traceID).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    for (const span of trace?.spans ?? []) expect(span.traceID).toBe(trace?.traceID);
    const root = trace?.spans[0];
    // Not a reference: the runtime's span is not in the file, and Jaeger wants references that resolve.
    expect(root?.references).toEqual([]);
    expect(tagOf(root, 'podwire.parent_span_id')).toBe('00f067aa0ba902b7');
  });
});

describe('a Jaeger file that cannot be written', () => {
  it('says so once and counts it, and the records still flow', async () => {
    const records = recorded('ipam-exhausted.ndjson');
    const said: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((text: string) => {
      said.push(text);
      return true;
    }) as typeof process.stderr.write;
    let sink: JaegerJsonSink;
    try {
      sink = new JaegerJsonSink(join(scratch, 'no-such-dir', 'trace.json'), 'node-1');
      for (const record of records) expect(() => sink.write(record)).not.toThrow();
      await sink.close();
    } finally {
      process.stderr.write = write;
    }
    expect(sink.failedWrites).toBeGreaterThan(0);
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(/cannot write the Jaeger file .*no-such-dir.*tracing goes on/);
  });
});

describe('a Jaeger file read while podwire runs, as a kill -9 or an OOM kill leaves it', () => {
  const records = recorded('ten-pods-plugin-uprobes.ndjson');

  it('is valid JSON after every record, holding each trace written so far', () => {
    const file = join(scratch, 'live.json');
    const sink = new JaegerJsonSink(file, 'node-1');
    const read = () => (JSON.parse(readFileSync(file, 'utf8')) as { data: Trace[] }).data;
    expect(read()).toEqual([]);
    records.forEach((record, i) => {
      sink.write(record);
      const traces = read();
      expect(traces, `after record ${i + 1}`).toHaveLength(i + 1);
      expect(traces[i]).toEqual(jaegerTrace(record, 'node-1'));
    });
    // Never closed, as after a kill -9: the file is already whole.
    expect(read()).toEqual(records.map((record) => jaegerTrace(record, 'node-1')));
  });

  it('stays valid JSON when the disk fills part way through a trace, says so once, and goes on', () => {
    // A real short write: the file size limit (ulimit -f, SIGXFSZ ignored) ends a write part way with EFBIG, as a
    // full disk ends it with ENOSPC. The sink runs in a child of its own (the built dist/, npm run build first).
    const input = join(scratch, 'records.ndjson');
    writeFileSync(input, records.map((record) => `${JSON.stringify(record)}\n`).join(''));
    const file = join(scratch, 'limited.json');
    const child = `
      import { readFileSync } from 'node:fs';
      import { JaegerJsonSink } from '${process.cwd()}/dist/src/sinks/jaeger-json.js';
      const sink = new JaegerJsonSink(process.argv[1], 'node-1');
      for (const line of readFileSync(process.argv[2], 'utf8').split('\\n').filter(Boolean)) {
        sink.write(JSON.parse(line));
        let traces;
        try { traces = JSON.parse(readFileSync(process.argv[1], 'utf8')).data.length; } catch { traces = 'invalid'; }
        console.log(traces);
      }
      await sink.close();
      console.log('failed writes', sink.failedWrites);`;
    const limitKb = 24;
    const run = spawnSync(
      'bash',
      [
        '-c',
        `trap '' XFSZ; ulimit -f ${limitKb}; exec node --input-type=module -e "$0" "$1" "$2"`,
        child,
        file,
        input,
      ],
      { encoding: 'utf8' },
    );
    expect(run.status, run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n');
    const counts = lines.slice(0, records.length);
    expect(counts).not.toContain('invalid');
    // A record whose write was refused adds no trace; a smaller one after it may still fit.
    const kept = records.filter(
      (_, i) => Number(counts[i]) > (i === 0 ? 0 : Number(counts[i - 1])),
    );
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThan(records.length);
    expect(lines.at(-1)).toBe(`failed writes ${records.length - kept.length}`);
    expect(run.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(
        /^podwire: cannot write the Jaeger file .*limited\.json: .*too large.*tracing goes on$/,
      ),
    ]);
    const traces = (JSON.parse(readFileSync(file, 'utf8')) as { data: Trace[] }).data;
    expect(traces).toEqual(kept.map((record) => jaegerTrace(record, 'node-1')));
    expect(readFileSync(file).length).toBeLessThanOrEqual(limitKb * 1024);
  });
});
