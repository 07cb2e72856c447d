// A collector in trouble, met by podwire's real export path (SDK exporter, queue, status lines, metrics): the
// records of a real lab recording go to a receiver that refuses, answers slowly, goes down, or rejects spans.
// One podwire telemetry for the whole file, as one daemon meets one fault after another; each test starts with
// a collector that answers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import type { StatusEvent } from '../../src/events.js';
import { RecordTracer } from '../../src/otel/record-tracer.js';
import { startTelemetry, type Telemetry } from '../../src/otel/telemetry.js';
import { MetricsSink } from '../../src/sinks/metrics.js';
import { readRecording, replay } from '../correlate/recordings.js';
import { freePort } from '../lab/node.js';
import { until } from '../until.js';
import { type OtlpReceiver, startOtlpReceiver } from './otlp-receiver.js';
import { sample } from './prometheus.js';
import { expectTraceOfRecord, traceOf } from './traces.js';

const records = (() => {
  const { header, lines } = readRecording('ten-pods-plugin-uprobes.ndjson');
  return replay(header, lines);
})();
const spansOf = (some: HandshakeRecord[]) => some.reduce((n, r) => n + r.phases.length + 1, 0);

// Short waits, so that the file runs in seconds; the defaults are 1 s doubling to 10 s, Retry-After up to 30 s.
const queue = {
  maxQueueSize: 200,
  maxBatchSize: 64,
  scheduleDelayMs: 50,
  initialBackoffMs: 200,
  maxBackoffMs: 1000,
  maxRetryAfterMs: 1500,
};

let receiver: OtlpReceiver;
let telemetry: Telemetry;
let tracer: RecordTracer;
let metrics: MetricsSink;
const statuses: StatusEvent[] = [];
const said = (state: StatusEvent['state']) => statuses.filter((s) => s.state === state);

/** Hands the records to the tracer as the daemon does, and says how long that took. */
function write(some: HandshakeRecord[]): number {
  const started = performance.now();
  for (const record of some) tracer.write(record);
  return performance.now() - started;
}

const refusedAnswers = () => receiver.answers.filter((a) => a.answer.startsWith('refused'));
const gaps = (times: number[]) => times.slice(1).map((t, i) => t - (times[i] as number));

beforeAll(async () => {
  receiver = await startOtlpReceiver('http/protobuf');
  const started = await startTelemetry({
    otlp: { endpoint: receiver.endpoint, queue },
    metrics: { host: '127.0.0.1', port: await freePort() },
    status: (event) => statuses.push(event),
  });
  if ('error' in started) throw new Error(started.error);
  telemetry = started;
  tracer = new RecordTracer(telemetry);
  metrics = new MetricsSink(telemetry, () => telemetry.queue?.counters.dropped ?? null);
});

afterAll(async () => {
  await metrics?.close();
  await telemetry?.shutdown();
  await receiver?.close();
});

describe('a collector in trouble, and podwire', () => {
  it('keeps the spans while the collector answers 503, retries with a growing backoff, and delivers them all once it recovers; said once, and once more when it is back', async () => {
    // Two records: one batch, so that each request is an attempt of the same spans.
    const sent = records.slice(0, 2);
    expect(spansOf(sent)).toBeLessThanOrEqual(queue.maxBatchSize);
    receiver.behave({ kind: 'refuse', status: 503 });
    // Bounds in these tests tell waiting from not waiting (a collector's seconds), with room for a busy machine.
    expect(write(sent), 'ms to hand 2 records over').toBeLessThan(1000);
    await until('three refused attempts', () => refusedAnswers().length >= 3);
    const [first, second] = gaps(refusedAnswers().map((a) => a.at));
    // 200 ms then 400 ms, each ±20%.
    expect(first).toBeGreaterThanOrEqual(150);
    expect(second).toBeGreaterThan(first as number);
    expect(said('export-failed')).toHaveLength(1);
    expect(said('export-failed')[0]?.message).toContain('503');
    expect(said('export-failed')[0]?.message).toContain(`${receiver.endpoint}/v1/traces`);
    expect(said('export-failed')[0]?.retrying).toBe(true);

    receiver.behave({ kind: 'ok' });
    await receiver.waitForSpans(spansOf(sent), 5000);
    for (const record of sent) expectTraceOfRecord(record, traceOf(record, receiver.spans));
    await until('the export-resumed status', () => said('export-resumed').length === 1);
    expect(said('export-resumed')[0]?.message).toMatch(/no span was dropped/);
    // However many attempts were refused: one line when it began, one when it ended.
    expect(refusedAnswers().length).toBeGreaterThanOrEqual(3);
    expect(said('export-failed')).toHaveLength(1);
    expect(telemetry.queue?.counters.dropped).toEqual({
      'queue-full': 0,
      'export-failed': 0,
      rejected: 0,
    });
    expect(telemetry.queue?.counters.exported).toBe(spansOf(sent));
  }, 20_000);

  it("honours a 429's Retry-After, and waits no longer than its bound for a longer one", async () => {
    const before = receiver.spans.length;
    const sent = records.slice(4, 5);
    receiver.behave({ kind: 'refuse', status: 429, retryAfterSeconds: 1 });
    const refusedBefore = refusedAnswers().length;
    write(sent);
    await until('two refused attempts', () => refusedAnswers().length >= refusedBefore + 2);
    const honoured = gaps(refusedAnswers().map((a) => a.at)).at(-1) as number;
    expect(honoured).toBeGreaterThanOrEqual(950);
    expect(honoured).toBeLessThan(2000);
    expect(said('export-failed').at(-1)?.message).toMatch(/retry after 1 s/);

    receiver.behave({ kind: 'refuse', status: 429, retryAfterSeconds: 120 });
    const refused = refusedAnswers().length;
    await until('two more refused attempts', () => refusedAnswers().length >= refused + 2);
    const bounded = gaps(refusedAnswers().map((a) => a.at)).at(-1) as number;
    expect(bounded).toBeGreaterThanOrEqual(1450);
    expect(bounded).toBeLessThan(4000);

    receiver.behave({ kind: 'ok' });
    await receiver.waitForSpans(before + spansOf(sent), 5000);
    expectTraceOfRecord(
      sent[0] as HandshakeRecord,
      traceOf(sent[0] as HandshakeRecord, receiver.spans),
    );
    await until('the second export-resumed', () => said('export-resumed').length === 2);
    expect(said('export-failed')).toHaveLength(2);
  }, 20_000);

  it('does not wait for a collector that takes 5 s per request: handing records over and the event loop stay prompt, and every trace arrives', async () => {
    const before = receiver.spans.length;
    const sent = records.slice(5, 8);
    receiver.behave({ kind: 'slow', delayMs: 5000 });
    const requests = receiver.answers.length;
    expect(write(sent), 'ms to hand 3 records over').toBeLessThan(1000);
    await until('the request at the collector', () => receiver.answers.length > requests);
    // While the request is out, the thread that hands records over is free: a timer fires on time.
    const lags: number[] = [];
    for (let i = 0; i < 20; i++) {
      const asked = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 10));
      lags.push(performance.now() - asked - 10);
    }
    expect(Math.max(...lags), 'event loop lag, ms').toBeLessThan(500);
    expect(receiver.spans.length).toBe(before);
    const spans = await receiver.waitForSpans(before + spansOf(sent), 12_000);
    for (const record of sent) expectTraceOfRecord(record, traceOf(record, spans));
    expect(said('export-failed')).toHaveLength(2);
    expect(Object.values(telemetry.queue?.counters.dropped ?? {})).toEqual([0, 0, 0]);
    receiver.behave({ kind: 'ok' });
  }, 20_000);

  it('keeps the newest spans while the collector is down, drops and counts the oldest beyond its bound, and delivers the rest once it is back on the same port', async () => {
    const before = receiver.spans.length;
    await receiver.down();
    const sent = records.slice(8);
    expect(spansOf(sent)).toBeGreaterThan(queue.maxQueueSize);
    expect(write(sent), `ms to hand ${sent.length} records over`).toBeLessThan(1000);
    await until('the export-failed status', () => said('export-failed').length === 3);
    expect(said('export-failed')[2]?.message).toMatch(/ECONNREFUSED/);
    await until(
      'the overflow counted',
      () => (telemetry.queue?.counters.dropped['queue-full'] ?? 0) > 0,
    );
    const dropped = telemetry.queue?.counters.dropped['queue-full'] as number;

    await receiver.up();
    await receiver.waitForSpans(before + spansOf(sent) - dropped, 8000);
    await until('the export-resumed status', () => said('export-resumed').length === 3);
    // What the collector never got is what podwire counted, and said when it came back.
    const received = receiver.spans.length - before;
    expect(received).toBeLessThanOrEqual(queue.maxQueueSize);
    expect(spansOf(sent) - received).toBe(telemetry.queue?.counters.dropped['queue-full']);
    const resumed = said('export-resumed')[2] as StatusEvent;
    expect(resumed.dropped).toEqual({
      'queue-full': spansOf(sent) - received,
      'export-failed': 0,
      rejected: 0,
    });
    expect(resumed.message).toContain(`${spansOf(sent) - received} spans were dropped`);
    // Whole records were dropped, the oldest: the traces at the collector are whole, and the newest are there.
    const roots = receiver.spans.slice(before).filter((s) => s.name.startsWith('pod network'));
    const arrived = sent.filter((record) =>
      roots.some(
        (root) =>
          root.attributes['container.id'] === record.sandboxId && root.name.endsWith(record.kind),
      ),
    );
    expect(spansOf(arrived)).toBe(received);
    expect(arrived.at(-1)).toBe(sent.at(-1));
    for (const record of arrived)
      expectTraceOfRecord(record, traceOf(record, receiver.spans.slice(before)));
    expect(said('export-failed')).toHaveLength(3);
  }, 30_000);

  it('counts the spans a collector rejects in a partial success under `rejected`, says so once, and delivers the others', async () => {
    const before = receiver.spans.length;
    const dropped = { ...(telemetry.queue?.counters.dropped ?? {}) };
    const failedBefore = said('export-failed').length;
    receiver.behave({ kind: 'partial', rejectSpans: 2, message: 'attribute value too long' });
    const requests = receiver.answers.length;
    // Two requests, a batch each.
    write(records.slice(0, 2));
    await until('a partial success', () => receiver.answers.length >= requests + 1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    write(records.slice(2, 4));
    await until('two partial successes', () => receiver.answers.length >= requests + 2);
    await until('the rejections counted', () => telemetry.queue?.counters.dropped.rejected === 4);
    const sentSpans = spansOf(records.slice(0, 4));
    expect(receiver.spans.length - before).toBe(sentSpans - 4);
    expect(telemetry.queue?.counters.dropped['queue-full']).toBe(dropped['queue-full']);
    const lines = said('export-failed').slice(failedBefore);
    expect(lines).toHaveLength(1);
    expect(lines[0]?.message).toMatch(/2 rejected by the collector.*attribute value too long/);
    receiver.behave({ kind: 'ok' });
  }, 20_000);

  it('serves podwire_spans_dropped_total with the counts, by reason', async () => {
    const text = await (await fetch(telemetry.metricsUrl as string)).text();
    const counters = telemetry.queue?.counters.dropped;
    expect(sample(text, 'podwire_spans_dropped_total', { reason: 'queue-full' })).toBe(
      counters?.['queue-full'],
    );
    expect(sample(text, 'podwire_spans_dropped_total', { reason: 'rejected' })).toBe(4);
    expect(sample(text, 'podwire_spans_dropped_total', { reason: 'export-failed' })).toBe(0);
  });
});
