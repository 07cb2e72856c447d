// Each handshake and teardown as one OpenTelemetry trace on this thread's SDK, with the kernel's own times. The
// OTLP sink runs it in a worker thread (export-worker.ts); tests run it in-process.
import {
  type Context,
  type HrTime,
  ROOT_CONTEXT,
  SpanStatusCode,
  TraceFlags,
  trace,
} from '@opentelemetry/api';
import type { HandshakeRecord } from '../correlate/record.js';
import type { StatusEvent } from '../events.js';
import type { Sink } from '../sinks/ndjson.js';
import { recordSpans, type SpanData } from './spans.js';
import type { Telemetry } from './telemetry.js';

const hrTime = (ns: bigint): HrTime => [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];

/** The context a span starts in: its parent, by id (the spans of a record are made in one go, parents first). */
function parentContext(span: SpanData): Context {
  if (span.parentSpanId === null) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: span.traceId,
    spanId: span.parentSpanId,
    traceFlags: TraceFlags.SAMPLED,
    // The root's parent is the runtime's span (TRACEPARENT): it lives in another process.
    isRemote: true,
  });
}

export class RecordTracer implements Sink {
  constructor(private readonly telemetry: Telemetry) {}

  write(record: HandshakeRecord | StatusEvent): void {
    const { tracer, ids } = this.telemetry;
    if (record.kind === 'status' || !tracer) return;
    for (const data of recordSpans(record)) {
      ids.traceId = data.traceId;
      ids.spanId = data.spanId;
      const span = tracer.startSpan(
        data.name,
        { startTime: hrTime(data.startNs), attributes: data.attributes },
        parentContext(data),
      );
      for (const event of data.events)
        span.addEvent(event.name, event.attributes, hrTime(event.timeNs));
      if (data.status.code === 'error') {
        span.setStatus({ code: SpanStatusCode.ERROR, message: data.status.message ?? '' });
      }
      span.end(hrTime(data.endNs));
    }
  }

  /** A replay waits here while the collector is behind, instead of dropping what it could send later. */
  backlog(): Promise<void> | null {
    return this.telemetry.queue?.room() ?? null;
  }

  async close(): Promise<void> {
    await this.telemetry.queue?.forceFlush(10_000);
  }
}
