// The Jaeger trace file (--jaeger-json): what Jaeger's UI opens with no backend, to attach to a bug report.
// The format's traps (docs/records.md): numbers in microseconds, references (not parentSpanID), no tag without key.

import { createWriteStream, type WriteStream } from 'node:fs';
import { hostname } from 'node:os';
import type { HandshakeRecord } from '../correlate/record.js';
import type { StatusEvent } from '../events.js';
import { type AttributeValue, recordSpans, type SpanData } from '../otel/spans.js';
import type { Sink } from './ndjson.js';

interface JaegerTag {
  key: string;
  type: 'string' | 'bool' | 'int64' | 'float64';
  value: AttributeValue;
}

function tag(key: string, value: AttributeValue): JaegerTag {
  if (typeof value === 'boolean') return { key, type: 'bool', value };
  if (typeof value === 'number')
    return { key, type: Number.isInteger(value) ? 'int64' : 'float64', value };
  return { key, type: 'string', value };
}

const micros = (ns: bigint) => Number(ns / 1000n);

function jaegerSpan(span: SpanData, inFile: Set<string>): Record<string, unknown> {
  const tags = Object.entries(span.attributes).map(([key, value]) => tag(key, value));
  if (span.status.code === 'error') {
    // Any truthy `error` tag marks the span red; never write it as false.
    tags.push(tag('error', true), tag('otel.status_code', 'ERROR'));
    if (span.status.message) tags.push(tag('otel.status_description', span.status.message));
  }
  // A parent outside the file (the runtime's span, from TRACEPARENT) would not resolve: kept as a tag instead.
  const references =
    span.parentSpanId && inFile.has(span.parentSpanId)
      ? [{ refType: 'CHILD_OF', traceID: span.traceId, spanID: span.parentSpanId }]
      : [];
  if (span.parentSpanId && !inFile.has(span.parentSpanId))
    tags.push(tag('podwire.parent_span_id', span.parentSpanId));
  const start = micros(span.startNs);
  return {
    traceID: span.traceId,
    spanID: span.spanId,
    operationName: span.name,
    references,
    // Both ends rounded down the same way: a child never sticks out of its parent by a rounding.
    startTime: start,
    duration: micros(span.endNs) - start,
    tags,
    logs: span.events.map((event) => ({
      timestamp: micros(event.timeNs),
      fields: [
        tag('event', event.name),
        ...Object.entries(event.attributes).map(([key, value]) => tag(key, value)),
      ],
    })),
    processID: 'p1',
    warnings: null,
  };
}

/** One record as one trace of the file. */
export function jaegerTrace(record: HandshakeRecord, node = hostname()): Record<string, unknown> {
  const spans = recordSpans(record);
  const inFile = new Set(spans.map((span) => span.spanId));
  return {
    traceID: spans[0]?.traceId,
    spans: spans.map((span) => jaegerSpan(span, inFile)),
    processes: {
      p1: {
        serviceName: 'podwire',
        tags: [tag('host.name', node), tag('k8s.node.name', node)],
      },
    },
    warnings: null,
  };
}

/**
 * Writes `{"data":[` first and each trace as its record arrives, so that a long run does not hold them all; the
 * closing `]}` comes at close(). A write that fails (full disk) is said once on stderr and counted; tracing goes on.
 */
export class JaegerJsonSink implements Sink {
  private readonly stream: WriteStream;
  private traces = 0;
  failedWrites = 0;

  constructor(
    readonly file: string,
    private readonly node = hostname(),
  ) {
    this.stream = createWriteStream(file);
    this.stream.on('error', (error) => {
      if (this.failedWrites++ === 0)
        process.stderr.write(
          `podwire: cannot write the Jaeger file ${file}: ${error.message} (free space or pass another --jaeger-json path); tracing goes on\n`,
        );
    });
    this.stream.write('{"data":[');
  }

  write(record: HandshakeRecord | StatusEvent): void {
    if (record.kind === 'status') return;
    const text = JSON.stringify(jaegerTrace(record, this.node));
    this.stream.write(`${this.traces++ === 0 ? '\n' : ',\n'}${text}`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.stream.end('\n]}\n', () => resolve());
      this.stream.once('error', () => resolve());
    });
  }
}
