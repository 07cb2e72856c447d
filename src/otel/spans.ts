// One handshake or teardown record as the spans of one trace: the shape both the OTLP export and the Jaeger file
// write (docs/records.md, "OpenTelemetry"). Pure: ids come from the record itself, so a replay gives the same trace.
import { createHash } from 'node:crypto';
import type { HandshakeRecord } from '../correlate/record.js';
import { epochNanos } from '../time.js';

export type AttributeValue = string | number | boolean;

export interface SpanEvent {
  name: string;
  timeNs: bigint;
  attributes: Record<string, AttributeValue>;
}

export interface SpanData {
  traceId: string;
  spanId: string;
  /** The span this one ran inside; for the root, the runtime's span when it passed a TRACEPARENT, else null. */
  parentSpanId: string | null;
  name: string;
  /** Epoch nanoseconds: the kernel's own times, not when podwire processed them. */
  startNs: bigint;
  endNs: bigint;
  attributes: Record<string, AttributeValue>;
  status: { code: 'unset' | 'ok' | 'error'; message?: string };
  events: SpanEvent[];
}

export const rootSpanName = {
  handshake: 'pod network handshake',
  teardown: 'pod network teardown',
};

/** W3C traceparent `00-<trace id>-<parent id>-<flags>`; an all-zero id is invalid. */
export function parseTraceparent(text: string | null): { traceId: string; spanId: string } | null {
  const match = /^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/.exec(text?.trim() ?? '');
  if (!match?.[1] || !match[2] || /^0+$/.test(match[1]) || /^0+$/.test(match[2])) return null;
  return { traceId: match[1], spanId: match[2] };
}

const hex8 = (value: number) => value.toString(16).padStart(8, '0');

/**
 * One hash per record, not per span (a record has tens of spans): the trace id and a span id base from it; the
 * span ids count up from the base, unique in the record, and across records even when the runtime's TRACEPARENT
 * puts every pod in one trace.
 */
function recordIds(record: HandshakeRecord): {
  traceId: string;
  spanId: (index: number) => string;
} {
  const digest = createHash('sha256')
    .update(`${record.kind} ${record.sandboxId ?? ''} ${record.start}`)
    .digest();
  const high = hex8(digest.readUInt32BE(16) || 1);
  const low = digest.readUInt32BE(20);
  return {
    traceId: digest.subarray(0, 16).toString('hex'),
    spanId: (index: number) => `${high}${hex8((low + index + 1) >>> 0)}`,
  };
}

/** What the record says of the pod, as the root span's attributes (semantic conventions where one exists). */
function rootAttributes(record: HandshakeRecord): Record<string, AttributeValue> {
  const attributes: Record<string, AttributeValue> = {};
  const set = (key: string, value: AttributeValue | null | undefined) => {
    if (value !== null && value !== undefined && value !== '') attributes[key] = value;
  };
  set('k8s.pod.name', record.pod.name);
  set('k8s.namespace.name', record.pod.namespace);
  set('k8s.pod.uid', record.pod.uid);
  set('container.id', record.sandboxId);
  set('container.runtime', record.runtime);
  set('podwire.outcome', record.outcome);
  if (record.missing?.length) set('podwire.missing', record.missing.join('; '));
  set('podwire.netns', record.netns);
  set('podwire.pod_ip', record.podIP);
  set('podwire.host_veth', record.hostVeth);
  set('podwire.pod_interface', record.podInterface);
  set('podwire.bridge', record.bridge);
  if (record.cni.length > 0) set('podwire.cni.plugins', record.cni.join(','));
  if (record.error) {
    set('podwire.error.phase', record.error.phase);
    set('podwire.error.message', record.error.message);
  }
  return attributes;
}

/** The spans of one record: the root first, then every phase in the record's order. */
export function recordSpans(record: HandshakeRecord): SpanData[] {
  const parent = parseTraceparent(record.traceparent);
  const ids = recordIds(record);
  const traceId = parent?.traceId ?? ids.traceId;
  const spanId = ids.spanId;
  const startNs = epochNanos(record.start);
  const endNs = epochNanos(record.end);
  const root: SpanData = {
    traceId,
    spanId: spanId(-1),
    parentSpanId: parent?.spanId ?? null,
    name: rootSpanName[record.kind],
    startNs,
    endNs,
    attributes: rootAttributes(record),
    status:
      record.outcome === 'failed'
        ? { code: 'error', message: record.error?.message ?? 'failed' }
        : { code: 'unset' },
    events: record.deviations.map((deviation) => ({
      name: 'deviation',
      timeNs: startNs,
      attributes: { 'podwire.deviation': deviation },
    })),
  };
  const phases: SpanData[] = record.phases.map((phase) => {
    const phaseStart = epochNanos(phase.start);
    const phaseEnd = phase.end === null ? phaseStart : epochNanos(phase.end);
    const attributes: Record<string, AttributeValue> = { ...phase.attributes };
    if (phase.end === null) attributes['podwire.unfinished'] = true;
    return {
      traceId,
      spanId: spanId(phase.id),
      parentSpanId: phase.parentId === null ? root.spanId : spanId(phase.parentId),
      name: phase.name,
      startNs: phaseStart,
      endNs: phaseEnd,
      attributes,
      // The record already marks every phase above a failing one as failed too.
      status: phase.error ? { code: 'error', message: phase.error } : { code: 'unset' },
      events: phase.error
        ? [
            {
              name: 'exception',
              timeNs: phaseEnd,
              attributes: {
                'exception.type': 'podwire.PhaseFailed',
                'exception.message': phase.error,
              },
            },
          ]
        : [],
    };
  });
  return [root, ...phases];
}
