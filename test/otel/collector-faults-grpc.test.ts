// The same collector faults over OTLP/gRPC, where the SDK's exporter does not retry at all: podwire's queue does.
// Records of a real lab recording, a real exporter and queue; the receiver's misbehaviour is a fake (see it).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import type { StatusEvent } from '../../src/events.js';
import { RecordTracer } from '../../src/otel/record-tracer.js';
import { startTelemetry, type Telemetry } from '../../src/otel/telemetry.js';
import { readRecording, replay } from '../correlate/recordings.js';
import { until } from '../until.js';
import { type OtlpReceiver, startOtlpReceiver } from './otlp-receiver.js';
import { expectTraceOfRecord, traceOf } from './traces.js';

const records = (() => {
  const { header, lines } = readRecording('ten-pods.ndjson');
  return replay(header, lines);
})();
const spansOf = (some: HandshakeRecord[]) => some.reduce((n, r) => n + r.phases.length + 1, 0);

let receiver: OtlpReceiver;
let telemetry: Telemetry;
let tracer: RecordTracer;
const statuses: StatusEvent[] = [];
const said = (state: StatusEvent['state']) => statuses.filter((s) => s.state === state);

beforeAll(async () => {
  receiver = await startOtlpReceiver('grpc');
  process.env.OTEL_EXPORTER_OTLP_PROTOCOL = 'grpc';
  const started = await startTelemetry({
    otlp: {
      endpoint: receiver.endpoint,
      queue: { scheduleDelayMs: 50, initialBackoffMs: 200, maxBackoffMs: 1000 },
    },
    status: (event) => statuses.push(event),
  });
  delete process.env.OTEL_EXPORTER_OTLP_PROTOCOL;
  if ('error' in started) throw new Error(started.error);
  telemetry = started;
  tracer = new RecordTracer(telemetry);
});

afterAll(async () => {
  await telemetry?.shutdown();
  await receiver?.close();
});

describe('over OTLP/gRPC, a collector in trouble', () => {
  it.each([
    [503, 'UNAVAILABLE'],
    [429, 'RESOURCE_EXHAUSTED'],
  ] as const)(
    'answering %s (%s) for a while: the spans are retried and all arrive, said once and once more when it is back',
    async (code, name) => {
      const before = receiver.spans.length;
      const failedBefore = said('export-failed').length;
      const sent = records.slice(code === 503 ? 0 : 2, code === 503 ? 2 : 4);
      receiver.behave({ kind: 'refuse', status: code });
      for (const record of sent) tracer.write(record);
      await until(
        'three refused attempts',
        () => receiver.answers.filter((a) => a.answer === `refused ${code}`).length >= 3,
      );
      receiver.behave({ kind: 'ok' });
      await receiver.waitForSpans(before + spansOf(sent), 5000);
      for (const record of sent) expectTraceOfRecord(record, traceOf(record, receiver.spans));
      await until('export-resumed', () => said('export-resumed').length === failedBefore + 1);
      const lines = said('export-failed').slice(failedBefore);
      expect(lines).toHaveLength(1);
      expect(lines[0]?.message).toContain(name);
      expect(Object.values(telemetry.queue?.counters.dropped ?? {})).toEqual([0, 0, 0]);
    },
    15_000,
  );

  it('down, then back on the same port: the traces sent meanwhile and later arrive', async () => {
    const before = receiver.spans.length;
    await receiver.down();
    const meanwhile = records.slice(4, 6);
    for (const record of meanwhile) tracer.write(record);
    await until('export-failed', () => said('export-failed').length === 3);
    await receiver.up();
    const later = records.slice(6, 8);
    for (const record of later) tracer.write(record);
    // The gRPC channel reconnects with its own backoff (about a second here).
    await receiver.waitForSpans(before + spansOf([...meanwhile, ...later]), 15_000);
    for (const record of [...meanwhile, ...later])
      expectTraceOfRecord(record, traceOf(record, receiver.spans));
    await until('export-resumed', () => said('export-resumed').length === 3);
  }, 25_000);

  it('counts the spans a partial success rejects under `rejected`', async () => {
    const before = receiver.spans.length;
    receiver.behave({ kind: 'partial', rejectSpans: 3, message: 'too many attributes' });
    const sent = records.slice(8, 10);
    for (const record of sent) tracer.write(record);
    await until('the rejection counted', () => telemetry.queue?.counters.dropped.rejected === 3);
    expect(receiver.spans.length - before).toBe(spansOf(sent) - 3);
    expect(said('export-failed').at(-1)?.message).toMatch(/3 rejected.*too many attributes/);
    receiver.behave({ kind: 'ok' });
  });
});
