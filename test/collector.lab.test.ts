// podwire trace on the real lab while its OTLP collector is in trouble: it answers 503 and recovers, is down for a
// minute and comes back on its port, then takes 5 s per request. Tracing and stdout go on on time, every span that
// never reaches the collector is counted in podwire_spans_dropped_total, each outage is said once (and its end
// once), and the traces after it arrive whole. The collector's misbehaviour is the test receiver's fake
// (test/otel/otlp-receiver.ts); podwire, the lab and the pods are real.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../src/correlate/record.js';
import { freePort, isRoot, noLabUp, podwire, rootReason } from './lab/node.js';
import { type Created, endTracedLab, type Trace, tracedLab } from './lab/traced.js';
import { type OtlpReceiver, startOtlpReceiver } from './otel/otlp-receiver.js';
import { sample } from './otel/prometheus.js';
import { expectTraceOfRecord, traceOf } from './otel/traces.js';

/** Spans podwire keeps while the collector is away: small, so that a minute's outage overflows it. */
const maxQueueSize = 80;

describe.skipIf(!isRoot)(
  `podwire trace with a collector in trouble${isRoot ? '' : ` (skipped: ${rootReason})`}`,
  () => {
    let scratch = '';
    let recording = '';
    let trace: Trace;
    let collector: OtlpReceiver;
    let metricsPort: number;

    type Status = { kind: 'status'; state: string; message: string; [detail: string]: unknown };
    const statuses = (state: string) =>
      trace.lines.filter((l): l is Status => l.kind === 'status' && l.state === state);
    const records = () => [...trace.records('handshake'), ...trace.records('teardown')];

    /** `lab pods create`, and how long each handshake took to reach stdout after the command returned. */
    async function createPods(count: number, why: string): Promise<HandshakeRecord[]> {
      const result = await podwire(
        'lab',
        'pods',
        'create',
        '--count',
        String(count),
        '--parallel',
        String(count),
        '--json',
      );
      expect(result.code, result.stderr).toBe(0);
      const created = (JSON.parse(result.stdout) as Created).pods;
      const returned = Date.now();
      const find = () =>
        created.map((pod) => trace.records('handshake').find((r) => r.sandboxId === pod.sandboxId));
      await trace.waitFor(`${count} handshakes ${why}`, () => find().every(Boolean), 10_000);
      // stdout is not held up by the export: the records come as fast as with no collector at all.
      expect(Date.now() - returned, `ms from pods created to their records ${why}`).toBeLessThan(
        3000,
      );
      const found = find() as HandshakeRecord[];
      for (const record of found) expect(record.outcome, record.pod.name ?? '').toBe('ok');
      return found;
    }

    const spansOf = (some: HandshakeRecord[]) => some.reduce((n, r) => n + r.phases.length + 1, 0);
    /** Spans the collector got, each once (a retry after a lost answer may send one twice). */
    const received = () => new Set(collector.spans.map((s) => `${s.traceId}/${s.spanId}`)).size;
    const droppedTotal = async () => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      return ['queue-full', 'export-failed', 'rejected'].reduce(
        (n, reason) => n + (sample(text, 'podwire_spans_dropped_total', { reason }) ?? 0),
        0,
      );
    };
    /** Waits until every span podwire printed a record for is at the collector or counted as dropped. */
    async function allAccountedFor(what: string): Promise<number> {
      let dropped = 0;
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        dropped = await droppedTotal();
        if (received() + dropped === spansOf(records())) break;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(received() + dropped, `spans printed ${what}: received + dropped`).toBe(
        spansOf(records()),
      );
      return dropped;
    }

    beforeAll(async () => {
      await noLabUp();
      scratch = mkdtempSync(join(tmpdir(), 'podwire-collector-test-'));
      recording = join(scratch, 'run.ndjson');
      collector = await startOtlpReceiver('http/protobuf');
      metricsPort = await freePort();
      trace = await tracedLab(
        [],
        recording,
        ['--otlp', collector.endpoint, '--metrics', String(metricsPort)],
        { traceEnv: { OTEL_BSP_MAX_QUEUE_SIZE: String(maxQueueSize) } },
      );
    });

    afterAll(async () => {
      await endTracedLab(trace, recording, 'collector-lab');
      await collector?.close();
      if (scratch) rmSync(scratch, { recursive: true, force: true });
    });

    it('keeps tracing while the collector answers 503, says so once, and delivers the spans when it recovers', async () => {
      collector.behave({ kind: 'refuse', status: 503 });
      const during = await createPods(1, 'while the collector answers 503');
      await trace.waitFor('an export-failed status', () => statuses('export-failed').length > 0);
      expect(statuses('export-failed')[0]?.message).toContain('503');
      // Several attempts, refused, while the pods go on.
      await trace.waitFor(
        'three refused attempts',
        () => collector.answers.filter((a) => a.answer === 'refused 503').length >= 3,
        20_000,
      );
      const more = await createPods(1, 'still answered 503');
      collector.behave({ kind: 'ok' });
      await trace.waitFor('export-resumed', () => statuses('export-resumed').length === 1, 20_000);
      expect(statuses('export-failed')).toHaveLength(1);
      expect(await allAccountedFor('during the 503s')).toBe(0);
      for (const record of [...during, ...more])
        expectTraceOfRecord(record, traceOf(record, collector.spans));
      const after = await createPods(1, 'after the 503s');
      await collector.waitForSpans(spansOf(records()), 10_000);
      expectTraceOfRecord(
        after[0] as HandshakeRecord,
        traceOf(after[0] as HandshakeRecord, collector.spans),
      );
    }, 90_000);

    it('keeps tracing through a minute with the collector down, counts every span it could not keep in podwire_spans_dropped_total, says so once, and delivers the later traces', async () => {
      const before = received();
      await collector.down();
      const downAt = Date.now();
      // More spans than podwire keeps: handshakes, then their teardowns, while the port is closed.
      const during = await createPods(2, 'with the collector down');
      await trace.waitFor('the second export-failed', () => statuses('export-failed').length === 2);
      expect(statuses('export-failed')[1]?.message).toMatch(/ECONNREFUSED/);
      const deleted = await podwire('lab', 'pods', 'delete', '--all');
      expect(deleted.code, deleted.stderr).toBe(0);
      await trace.waitFor('the teardowns', () => trace.records('teardown').length >= 4);
      const more = await createPods(2, 'a while into the outage');
      expect(spansOf(records()) - before).toBeGreaterThan(maxQueueSize);
      await new Promise((resolve) =>
        setTimeout(resolve, Math.max(0, 60_000 - (Date.now() - downAt))),
      );
      expect(received()).toBe(before);
      // Said once however long it lasted, and nothing said of the drops until it ends.
      expect(statuses('export-failed')).toHaveLength(2);

      await collector.up();
      await trace.waitFor(
        'the second export-resumed',
        () => statuses('export-resumed').length === 2,
        30_000,
      );
      const dropped = await allAccountedFor('while the collector was down');
      expect(dropped).toBeGreaterThan(0);
      const resumed = statuses('export-resumed')[1] as Status & { dropped: Record<string, number> };
      expect(Object.values(resumed.dropped).reduce((n, d) => n + d, 0)).toBe(dropped);
      expect(resumed.message).toContain(`${dropped} spans were dropped`);
      // podwire kept the newest: the last pod's trace is whole.
      const last = more.at(-1) as HandshakeRecord;
      expectTraceOfRecord(last, traceOf(last, collector.spans));
      expect(during.length).toBe(2);
      const after = await createPods(1, 'after the outage');
      const expected = received() + spansOf(after);
      await trace.waitFor('the trace after the outage', () => received() >= expected, 20_000);
      expectTraceOfRecord(
        after[0] as HandshakeRecord,
        traceOf(after[0] as HandshakeRecord, collector.spans),
      );
      expect(await droppedTotal()).toBe(dropped);
    }, 180_000);

    it('keeps stdout on time with a collector that takes 5 s per request, and the traces arrive', async () => {
      const dropped = await droppedTotal();
      collector.behave({ kind: 'slow', delayMs: 5000 });
      const slow = [
        ...(await createPods(1, 'with a slow collector')),
        ...(await createPods(1, 'with a slow collector, again')),
      ];
      for (const record of slow) expect(record.outcome).toBe('ok');
      await allAccountedFor('with a slow collector');
      for (const record of slow) expectTraceOfRecord(record, traceOf(record, collector.spans));
      expect(await droppedTotal()).toBe(dropped);
      expect(statuses('export-failed')).toHaveLength(2);
      collector.behave({ kind: 'ok' });
    }, 90_000);
  },
);
