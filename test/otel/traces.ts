// The checks a user makes of the traces podwire exported, shared by the replay tests and the lab run:
// one trace per record, the tree as recorded, kernel times nested, the record's values as attributes.
import { expect } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import { epochNanos } from '../../src/time.js';
import type { ReceivedSpan } from './otlp-receiver.js';

/** The Jaeger file's shapes, as the tests read them back (docs/records.md: what Jaeger's UI needs). */
export interface JaegerTag {
  key: string;
  type: string;
  value: unknown;
}
export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: { refType: string; traceID: string; spanID: string }[];
  startTime: number;
  duration: number;
  tags: JaegerTag[];
  logs: { timestamp: number; fields: JaegerTag[] }[];
  processID: string;
}
export interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string; tags: JaegerTag[] }>;
}

export function byTrace(spans: ReceivedSpan[]): Map<string, ReceivedSpan[]> {
  const traces = new Map<string, ReceivedSpan[]>();
  for (const span of spans) {
    const list = traces.get(span.traceId) ?? [];
    list.push(span);
    traces.set(span.traceId, list);
  }
  return traces;
}

/** The root of one record's trace: the span whose parent is not in the trace (none, or the runtime's span). */
export function rootOf(spans: ReceivedSpan[]): ReceivedSpan {
  const ids = new Set(spans.map((s) => s.spanId));
  const roots = spans.filter((s) => !ids.has(s.parentSpanId));
  expect(roots, 'exactly one root span').toHaveLength(1);
  return roots[0] as ReceivedSpan;
}

/** The trace whose root names this record's pod and started when the record did. */
export function traceOf(record: HandshakeRecord, spans: ReceivedSpan[]): ReceivedSpan[] {
  const start = epochNanos(record.start);
  const found = [...byTrace(spans).values()].filter((trace) => {
    const root = rootOf(trace);
    return (
      root.startNs === start && root.attributes['k8s.pod.name'] === (record.pod.name ?? undefined)
    );
  });
  expect(
    found,
    `one trace for ${record.kind} of ${record.pod.name} at ${record.start}`,
  ).toHaveLength(1);
  return found[0] as ReceivedSpan[];
}

/** One record's trace as the user reads it in Jaeger: the tree, the times, the values, the failure. */
export function expectTraceOfRecord(record: HandshakeRecord, trace: ReceivedSpan[]): void {
  const root = rootOf(trace);
  expect(root.name).toBe(
    record.kind === 'handshake' ? 'pod network handshake' : 'pod network teardown',
  );
  expect(trace).toHaveLength(record.phases.length + 1);
  expect(root.endNs).toBe(epochNanos(record.end));
  const expectAttribute = (key: string, value: unknown) => {
    if (value !== null && value !== undefined) expect(root.attributes[key], key).toBe(value);
  };
  expectAttribute('k8s.pod.name', record.pod.name);
  expectAttribute('k8s.namespace.name', record.pod.namespace);
  expectAttribute('k8s.pod.uid', record.pod.uid);
  expectAttribute('container.id', record.sandboxId);
  expectAttribute('podwire.outcome', record.outcome);
  expectAttribute('podwire.netns', record.netns);
  expectAttribute('podwire.pod_ip', record.podIP);
  expectAttribute('podwire.host_veth', record.hostVeth);
  expectAttribute('podwire.bridge', record.bridge);
  // Phases in the record's order, each under the span of the phase it ran inside, with the kernel's times.
  const children = trace
    .filter((span) => span !== root)
    .sort((a, b) => (a.startNs < b.startNs ? -1 : 1));
  const spanOfPhase = new Map<number, ReceivedSpan>();
  const matched = new Set<ReceivedSpan>();
  for (const phase of record.phases) {
    const span = children.find(
      (s) => !matched.has(s) && s.name === phase.name && s.startNs === epochNanos(phase.start),
    );
    expect(span, `a span for ${phase.name} at ${phase.start}`).toBeDefined();
    matched.add(span as ReceivedSpan);
    spanOfPhase.set(phase.id, span as ReceivedSpan);
    for (const [key, value] of Object.entries(phase.attributes))
      expect((span as ReceivedSpan).attributes[key], `${phase.name} ${key}`).toEqual(value);
    expect((span as ReceivedSpan).status.code).toBe(phase.error ? 'error' : 'unset');
    if (phase.error) {
      expect((span as ReceivedSpan).status.message).toBe(phase.error);
      expect((span as ReceivedSpan).events.map((e) => e.name)).toContain('exception');
    }
  }
  for (const phase of record.phases) {
    const span = spanOfPhase.get(phase.id) as ReceivedSpan;
    const parent =
      phase.parentId === null ? root : (spanOfPhase.get(phase.parentId) as ReceivedSpan);
    expect(span.parentSpanId, `${phase.name} inside ${parent.name}`).toBe(parent.spanId);
    // sandbox start ends when the sandbox's process execs, which can come after RunPodSandbox returned.
    const endsInside = phase.name === 'sandbox start' || span.endNs <= parent.endNs;
    expect(
      span.startNs >= parent.startNs && endsInside,
      `${phase.name} times inside ${parent.name}`,
    ).toBe(true);
  }
  expect(root.status.code).toBe(record.outcome === 'failed' ? 'error' : 'unset');
  if (record.outcome === 'failed') expect(root.status.message).toBe(record.error?.message);
  expect(
    root.events.filter((e) => e.name === 'deviation').map((e) => e.attributes['podwire.deviation']),
  ).toEqual(record.deviations);
}

/**
 * The Jaeger file and the OTLP export hold the same spans: ids, names, parents, times (µs), attributes. The one
 * difference allowed: a root whose parent is the runtime's span has it as a reference in OTLP and as the tag
 * `podwire.parent_span_id` in the file (Jaeger wants references that resolve inside the file).
 */
export function expectJaegerMatchesOtlp(jaeger: JaegerSpan[], otlp: ReceivedSpan[]): void {
  expect(jaeger).toHaveLength(otlp.length);
  const bySpanId = new Map(otlp.map((span) => [span.spanId, span]));
  for (const span of jaeger) {
    const exported = bySpanId.get(span.spanID);
    expect(exported, `OTLP span ${span.spanID} (${span.operationName})`).toBeDefined();
    if (!exported) continue;
    expect(span.traceID).toBe(exported.traceId);
    expect(span.operationName).toBe(exported.name);
    expect(span.startTime).toBe(Number(exported.startNs / 1000n));
    expect(span.startTime + span.duration).toBe(Number(exported.endNs / 1000n));
    const parent =
      span.references.find((r) => r.refType === 'CHILD_OF')?.spanID ??
      span.tags.find((t) => t.key === 'podwire.parent_span_id')?.value ??
      '';
    expect(parent, `${span.operationName} parent`).toBe(exported.parentSpanId);
    for (const [key, value] of Object.entries(exported.attributes))
      expect(span.tags.find((t) => t.key === key)?.value, `${span.operationName} ${key}`).toEqual(
        value,
      );
  }
}
