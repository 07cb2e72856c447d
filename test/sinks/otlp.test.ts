// `podwire replay --otlp` into a real OTLP receiver over each protocol, and a collector that is down and then up:
// what a user sees in Jaeger must be the records podwire printed, span for span.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import type { StatusEvent } from '../../src/events.js';
import { RecordTracer } from '../../src/otel/record-tracer.js';
import { startTelemetry, type Telemetry } from '../../src/otel/telemetry.js';
import { readRecording, replay } from '../correlate/recordings.js';
import { freePort } from '../lab/node.js';
import { type OtlpReceiver, startOtlpReceiver } from '../otel/otlp-receiver.js';
import {
  byTrace,
  expectJaegerMatchesOtlp,
  expectTraceOfRecord,
  type JaegerSpan,
  rootOf,
  traceOf,
} from '../otel/traces.js';

const scratch = mkdtempSync(join(tmpdir(), 'podwire-otlp-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const fixture = (name: string) =>
  new URL(`../fixtures/recordings/${name}`, import.meta.url).pathname;

/** `podwire replay FILE --json --otlp ENDPOINT --jaeger-json FILE`, as a user runs it; NDJSON records back. */
function replayToCollector(
  recording: string,
  receiver: OtlpReceiver,
  jaegerFile: string,
  env: Record<string, string>,
): Promise<{ records: HandshakeRecord[]; stderr: string; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'node',
      [
        'dist/src/cli.js',
        'replay',
        fixture(recording),
        '--json',
        '--otlp',
        receiver.endpoint,
        '--jaeger-json',
        jaegerFile,
      ],
      { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`replay exited ${code}: ${stderr}`));
      const records = stdout
        .split('\n')
        .filter((line) => line.trim())
        .map((line) => JSON.parse(line) as HandshakeRecord | StatusEvent)
        .filter((line): line is HandshakeRecord => line.kind !== 'status');
      resolve({ records, stderr, stdout });
    });
  });
}

describe.each([
  ['http/protobuf', 'ten-pods-plugin-uprobes.ndjson'],
  ['http/json', 'ipam-exhausted.ndjson'],
  ['grpc', 'containerd2-three-pods.ndjson'],
] as const)('podwire replay --otlp over %s (%s)', (protocol, recording) => {
  let receiver: OtlpReceiver;
  let records: HandshakeRecord[];
  let stderr: string;
  const jaegerFile = join(scratch, `${recording}.jaeger.json`);

  beforeAll(async () => {
    receiver = await startOtlpReceiver(protocol);
    ({ records, stderr } = await replayToCollector(recording, receiver, jaegerFile, {
      OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
      OTEL_RESOURCE_ATTRIBUTES: 'k8s.cluster.name=lab,deployment.environment.name=test',
      NODE_NAME: 'node-7',
    }));
  }, 60_000);
  afterAll(() => receiver?.close());

  it('says where the traces go', () => {
    expect(stderr).toContain(`(${protocol})`);
    expect(stderr).toContain('127.0.0.1');
  });

  it('sends one trace per handshake and teardown, all of them before it exits', () => {
    expect(records.length).toBeGreaterThan(0);
    expect(byTrace(receiver.spans).size).toBe(records.length);
    expect(receiver.spans).toHaveLength(records.reduce((n, r) => n + r.phases.length + 1, 0));
  });

  it("gives each trace the record's tree, kernel times nested in their parents, and the record's values", () => {
    for (const record of records) expectTraceOfRecord(record, traceOf(record, receiver.spans));
  });

  it('names the service and the node, and keeps OTEL_RESOURCE_ATTRIBUTES', () => {
    for (const span of receiver.spans) {
      expect(span.resource['service.name']).toBe('podwire');
      expect(span.resource['k8s.node.name']).toBe('node-7');
      expect(span.resource['k8s.cluster.name']).toBe('lab');
      expect(typeof span.resource['host.name']).toBe('string');
      expect(span.scope).toBe('podwire');
    }
  });

  it('matches the Jaeger file of the same replay span for span', () => {
    const file = JSON.parse(readFileSync(jaegerFile, 'utf8')) as {
      data: { spans: JaegerSpan[] }[];
    };
    expectJaegerMatchesOtlp(
      file.data.flatMap((trace) => trace.spans),
      receiver.spans,
    );
  });
});

describe('a failed handshake in Jaeger', () => {
  it('is red from the failing plugin up to the root, with the plugin message and an exception event', async () => {
    const receiver = await startOtlpReceiver('http/protobuf');
    try {
      const { records } = await replayToCollector(
        'ipam-exhausted.ndjson',
        receiver,
        join(scratch, 'failed.json'),
        {},
      );
      const failed = records.find((r) => r.outcome === 'failed') as HandshakeRecord;
      const trace = traceOf(failed, receiver.spans);
      const root = rootOf(trace);
      expect(root.status).toEqual({ code: 'error', message: failed.error?.message });
      expect(failed.error?.message).toMatch(/no IP addresses available/);
      const ipam = trace.find((s) => s.name === 'ipam host-local');
      expect(ipam?.status.code).toBe('error');
      expect(
        ipam?.events.find((e) => e.name === 'exception')?.attributes['exception.message'],
      ).toBe(ipam?.status.message);
      expect(trace.find((s) => s.name === 'cni ADD bridge')?.status.code).toBe('error');
      const ok = records.filter((r) => r.outcome === 'ok' && r.kind === 'handshake');
      expect(ok.length).toBeGreaterThan(0);
      for (const record of ok)
        expect(rootOf(traceOf(record, receiver.spans)).status.code).toBe('unset');
    } finally {
      await receiver.close();
    }
  }, 60_000);
});

describe('podwire replay --otlp to a collector that is not there', () => {
  it('still prints every record, drops the spans with a status line saying why, and ends in bounded time', async () => {
    const port = await freePort();
    const closed = { endpoint: `http://127.0.0.1:${port}` } as OtlpReceiver;
    const started = Date.now();
    const { records, stdout } = await replayToCollector(
      'ten-pods-plugin-uprobes.ndjson',
      closed,
      join(scratch, 'nowhere.json'),
      { OTEL_EXPORTER_OTLP_TIMEOUT: '1000' },
    );
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(records).toHaveLength(20);
    const said = stdout
      .split('\n')
      .filter((line) => line.includes('"state":"export-failed"'))
      .map((line) => JSON.parse(line) as StatusEvent);
    expect(said.length).toBeGreaterThan(0);
    expect(said[0]?.message).toMatch(
      new RegExp(`ECONNREFUSED.*http://127.0.0.1:${port}/v1/traces`),
    );
    const dropped = said.reduce((n, s) => {
      const d = s.dropped as Record<string, number>;
      return n + (d['queue-full'] ?? 0) + (d['export-failed'] ?? 0);
    }, 0);
    expect(dropped).toBe(records.reduce((n, r) => n + r.phases.length + 1, 0));
  }, 30_000);
});

describe('a collector that is down, then comes up (in-process, the real exporter)', () => {
  const statuses: StatusEvent[] = [];
  const records = (() => {
    const { header, lines } = readRecording('ipam-exhausted.ndjson');
    return replay(header, lines).filter((r) => r.kind === 'handshake');
  })();
  let telemetry: Telemetry;
  let sink: RecordTracer;
  let port: number;
  let receiver: OtlpReceiver | null = null;

  beforeAll(async () => {
    port = await freePort();
    // The exporter's own retries give up within this (its default is 10 s).
    process.env.OTEL_EXPORTER_OTLP_TIMEOUT = '1500';
    const started = await startTelemetry({
      otlp: { endpoint: `http://127.0.0.1:${port}` },
      status: (event) => statuses.push(event),
    });
    if ('error' in started) throw new Error(started.error);
    telemetry = started;
    sink = new RecordTracer(telemetry);
  });
  afterAll(async () => {
    await telemetry?.shutdown();
    await receiver?.close();
    delete process.env.OTEL_EXPORTER_OTLP_TIMEOUT;
  });

  it('keeps the spans it cannot deliver yet, says so once, and does not block the caller', async () => {
    const record = records[0] as HandshakeRecord;
    const before = Date.now();
    sink.write(record);
    expect(Date.now() - before, 'write returns at once').toBeLessThan(200);
    await telemetry.queue?.forceFlush(3000);
    expect(telemetry.queue?.counters.dropped['export-failed']).toBe(0);
    expect(telemetry.queue?.pending).toBe(record.phases.length + 1);
    const said = statuses.filter((s) => s.state === 'export-failed');
    expect(said).toHaveLength(1);
    expect(said[0]?.message).toContain(`http://127.0.0.1:${port}/v1/traces`);
    expect(said[0]?.message).toMatch(/ECONNREFUSED/);
    expect(said[0]?.retrying).toBe(true);
  }, 20_000);

  it('delivers the traces held and the next ones once the collector is up, and says it is back', async () => {
    receiver = await startOtlpReceiver('http/protobuf', { port });
    const record = records[1] as HandshakeRecord;
    sink.write(record);
    // The queue retries on its backoff (1 s, doubling to 10 s).
    await telemetry.queue?.forceFlush(15_000);
    for (const sent of records.slice(0, 2))
      expectTraceOfRecord(sent, traceOf(sent, receiver.spans));
    expect(statuses.some((s) => s.state === 'export-resumed')).toBe(true);
    expect(telemetry.queue?.counters.exported).toBe(
      records.slice(0, 2).reduce((n, r) => n + r.phases.length + 1, 0),
    );
  }, 20_000);

  it("puts a handshake whose plugins got a TRACEPARENT inside the runtime's trace", async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const record = { ...(records[2] as HandshakeRecord), traceparent };
    sink.write(record);
    await telemetry.queue?.forceFlush(5000);
    const trace = (receiver as OtlpReceiver).spans.filter(
      (s) => s.traceId === '4bf92f3577b34da6a3ce929d0e0e4736',
    );
    expect(trace).toHaveLength(record.phases.length + 1);
    expect(rootOf(trace).parentSpanId).toBe('00f067aa0ba902b7');
    expectTraceOfRecord(record, trace);
  }, 20_000);
});
