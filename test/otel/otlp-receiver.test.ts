// The test receiver reads what the real OpenTelemetry exporters send, over all three protocols, to the nanosecond.
import { context, type HrTime, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { OTLPTraceExporter as GrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { SimpleSpanProcessor, type SpanExporter, TracerProvider } from '@opentelemetry/sdk-trace';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type OtlpProtocol, type OtlpReceiver, startOtlpReceiver } from './otlp-receiver.js';

/** The exporters' own CompressionAlgorithm enum, which their packages do not export. */
type Compression = NonNullable<
  NonNullable<ConstructorParameters<typeof ProtobufExporter>[0]>['compression']
>;

/** An exporter of the protocol, configured in code, so OTEL_EXPORTER_OTLP_* cannot redirect it. */
function exporterFor(
  protocol: OtlpProtocol,
  receiver: OtlpReceiver,
  compression: 'none' | 'gzip',
): SpanExporter {
  const config = { compression: compression as Compression };
  switch (protocol) {
    case 'grpc':
      return new GrpcExporter({ ...config, url: receiver.endpoint });
    case 'http/json':
      return new JsonExporter({ ...config, url: `${receiver.endpoint}/v1/traces` });
    case 'http/protobuf':
      return new ProtobufExporter({ ...config, url: `${receiver.endpoint}/v1/traces` });
  }
}

const second = 1_700_000_000;
const parentStart: HrTime = [second, 123_456_789];
const childStart: HrTime = [second, 223_456_789];
const eventTime: HrTime = [second, 250_000_001];
const childEnd: HrTime = [second + 1, 1];
const parentEnd: HrTime = [second + 2, 999_999_999];
const ns = ([s, n]: HrTime) => BigInt(s) * 1_000_000_000n + BigInt(n);

const childAttributes = {
  'k8s.pod.name': 'web-0',
  'podwire.attempts': 3,
  'podwire.offset': -7,
  'podwire.bytes': 4_294_967_296,
  'podwire.ok': true,
  'podwire.ratio': 0.25,
};

/** A provider that exports every span as it ends, as podwire's would, through the given exporter. */
function providerWith(exporter: SpanExporter): TracerProvider {
  return new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'podwire-test' }),
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
}

/** A server span with an internal child that failed: the shape of a handshake with a failed phase. */
async function exportParentAndChild(provider: TracerProvider) {
  const tracer = provider.getTracer('podwire-receiver-test', '1.0.0');
  const parent = tracer.startSpan('pod network handshake', {
    kind: SpanKind.SERVER,
    startTime: parentStart,
    attributes: { 'k8s.pod.name': 'web-0' },
  });
  const child = tracer.startSpan(
    'cni add',
    { startTime: childStart, attributes: childAttributes },
    trace.setSpan(context.active(), parent),
  );
  child.addEvent('retry', { 'podwire.attempt': 2 }, eventTime);
  child.setStatus({ code: SpanStatusCode.ERROR, message: 'veth missing' });
  child.end(childEnd);
  parent.end(parentEnd);
  await provider.forceFlush();
  return { parent: parent.spanContext(), child: child.spanContext() };
}

const protocols: OtlpProtocol[] = ['http/protobuf', 'http/json', 'grpc'];
const contentType: Record<OtlpProtocol, string> = {
  'http/protobuf': 'application/x-protobuf',
  'http/json': 'application/json',
  grpc: 'application/grpc',
};

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  vi.unstubAllEnvs();
  const steps = cleanup.reverse();
  cleanup = [];
  for (const step of steps) await step();
});

async function receiver(protocol: OtlpProtocol, port?: number): Promise<OtlpReceiver> {
  const started = await startOtlpReceiver(protocol, port === undefined ? {} : { port });
  cleanup.push(() => started.close());
  return started;
}

describe.each(protocols)('an OTLP receiver for %s', (protocol) => {
  it.each(['none', 'gzip'] as const)(
    'reads the spans a real exporter sends (compression %s)',
    async (compression) => {
      const otlp = await receiver(protocol);
      const provider = providerWith(exporterFor(protocol, otlp, compression));
      cleanup.push(() => provider.shutdown());

      const sent = await exportParentAndChild(provider);
      const spans = await otlp.waitForSpans(2);

      expect(otlp.errors).toEqual([]);
      expect(otlp.contentTypes).toEqual(otlp.contentTypes.map(() => contentType[protocol]));
      if (protocol !== 'grpc') {
        expect(otlp.contentEncodings).toEqual(
          otlp.contentEncodings.map(() => (compression === 'gzip' ? 'gzip' : 'identity')),
        );
      }
      expect(spans).toHaveLength(2);
      const parent = spans.find((s) => s.name === 'pod network handshake');
      const child = spans.find((s) => s.name === 'cni add');
      expect(parent).toEqual({
        traceId: sent.parent.traceId,
        spanId: sent.parent.spanId,
        parentSpanId: '',
        name: 'pod network handshake',
        kind: 2,
        startNs: ns(parentStart),
        endNs: ns(parentEnd),
        attributes: { 'k8s.pod.name': 'web-0' },
        status: { code: 'unset', message: '' },
        events: [],
        resource: expect.objectContaining({ 'service.name': 'podwire-test' }),
        scope: 'podwire-receiver-test',
      });
      expect(child).toEqual({
        traceId: sent.parent.traceId,
        spanId: sent.child.spanId,
        parentSpanId: sent.parent.spanId,
        name: 'cni add',
        kind: 1,
        startNs: ns(childStart),
        endNs: ns(childEnd),
        attributes: childAttributes,
        status: { code: 'error', message: 'veth missing' },
        events: [{ name: 'retry', timeNs: ns(eventTime), attributes: { 'podwire.attempt': 2 } }],
        resource: expect.objectContaining({ 'service.name': 'podwire-test' }),
        scope: 'podwire-receiver-test',
      });
      expect(sent.parent.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(sent.child.spanId).toMatch(/^[0-9a-f]{16}$/);
    },
  );

  it('receives from an exporter given only OTEL_EXPORTER_OTLP_ENDPOINT', async () => {
    const otlp = await receiver(protocol);
    vi.stubEnv('OTEL_EXPORTER_OTLP_ENDPOINT', otlp.endpoint);
    const exporter =
      protocol === 'grpc'
        ? new GrpcExporter()
        : protocol === 'http/json'
          ? new JsonExporter()
          : new ProtobufExporter();
    const provider = providerWith(exporter);
    cleanup.push(() => provider.shutdown());

    const sent = await exportParentAndChild(provider);
    const spans = await otlp.waitForSpans(2);

    expect(otlp.errors).toEqual([]);
    expect(spans.map((s) => s.spanId).sort()).toEqual(
      [sent.parent.spanId, sent.child.spanId].sort(),
    );
  });

  it('receives again when a collector that went away comes back on the same port', async () => {
    const first = await receiver(protocol);
    const provider = providerWith(exporterFor(protocol, first, 'none'));
    cleanup.push(() => provider.shutdown());
    await exportParentAndChild(provider);
    await first.waitForSpans(2);
    await first.close();

    const again = await receiver(protocol, first.port);
    expect(again.port).toBe(first.port);
    const sent = await exportParentAndChild(provider);
    const spans = await again.waitForSpans(2);

    expect(spans.map((s) => s.spanId).sort()).toEqual(
      [sent.parent.spanId, sent.child.spanId].sort(),
    );
    expect(first.spans).toHaveLength(2);
  });
});

describe('waitForSpans', () => {
  it('says how many spans arrived when too few did', async () => {
    const otlp = await receiver('http/protobuf');
    await expect(otlp.waitForSpans(1, 50)).rejects.toThrow(
      'expected 1 spans within 50 ms, 0 arrived in 0 requests',
    );
  });
});

describe('OTLP/JSON as other writers spell it', () => {
  const traceId = '5b8efff798038103d269b633813fc60c';
  const spanId = 'eee19b7ec3c1b174';
  const post = (url: string, body: unknown) =>
    fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const request = (span: Record<string, unknown>) => ({
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { stringValue: 'other' } }] },
        scopeSpans: [{ scope: { name: 'other-sdk' }, spans: [span] }],
      },
    ],
  });

  it('reads 64-bit ints as strings, times as numbers and enums by name', async () => {
    const otlp = await receiver('http/json');
    const response = await post(
      `${otlp.endpoint}/v1/traces`,
      request({
        traceId: traceId.toUpperCase(),
        spanId,
        name: 'connect',
        kind: 'SPAN_KIND_CLIENT',
        startTimeUnixNano: 1_700_000_000_000_000_000,
        endTimeUnixNano: '1700000000000000001',
        attributes: [
          { key: 'retries', value: { intValue: '4294967296' } },
          { key: 'ratio', value: { doubleValue: 'NaN' } },
          {
            key: 'tags',
            value: { arrayValue: { values: [{ stringValue: 'a' }, { intValue: 1 }] } },
          },
          { key: 'empty', value: {} },
        ],
        status: { code: 'STATUS_CODE_OK' },
      }),
    );

    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({});
    const [span] = await otlp.waitForSpans(1);
    expect(span).toMatchObject({
      traceId,
      spanId,
      parentSpanId: '',
      kind: 3,
      startNs: 1_700_000_000_000_000_000n,
      endNs: 1_700_000_000_000_000_001n,
      attributes: { retries: 4_294_967_296, ratio: Number.NaN, tags: '["a",1]' },
      status: { code: 'ok', message: '' },
      resource: { 'service.name': 'other' },
      scope: 'other-sdk',
    });
  });

  it('refuses base64 ids, which are protobuf JSON but not OTLP/JSON, with a 400 saying so', async () => {
    const otlp = await receiver('http/json');
    const base64Id = Buffer.from(traceId, 'hex').toString('base64');
    const response = await post(
      `${otlp.endpoint}/v1/traces`,
      request({ traceId: base64Id, spanId }),
    );

    expect(response.status).toBe(400);
    expect(otlp.spans).toEqual([]);
    expect(otlp.errors).toEqual([expect.stringContaining('is not hex')]);
  });

  it('answers 404 off /v1/traces, as a collector does', async () => {
    const otlp = await receiver('http/json');
    const response = await post(`${otlp.endpoint}/`, request({ traceId, spanId }));

    expect(response.status).toBe(404);
    expect(otlp.errors).toEqual(['POST /: OTLP/HTTP traces go to POST /v1/traces']);
  });
});
