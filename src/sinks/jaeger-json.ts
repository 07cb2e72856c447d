// The Jaeger trace file (--jaeger-json): what Jaeger's UI opens with no backend, to attach to a bug report.
// The format's traps (docs/records.md): numbers in microseconds, references (not parentSpanID), no tag without key.

import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
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

const opening = '{"data":[';
const closing = '\n]}\n';

/**
 * A file that is valid JSON after every write, so that it still opens after a kill -9 or an OOM kill: the file opens
 * as `{"data":[` and the closing `]}`, and each trace is written over the closing with a new closing after it, in one
 * positional write, as its record arrives (a long run does not hold the traces). A write that fails (a full disk)
 * is said once on stderr and counted, the closing is put back, and tracing goes on.
 */
export class JaegerJsonSink implements Sink {
  private fd: number | null = null;
  /** Whether the file holds `{"data":[` and the closing yet (a full disk may refuse even that). */
  private begun = false;
  /** Where the closing starts: the next trace is written there. */
  private end = opening.length;
  private traces = 0;
  failedWrites = 0;

  constructor(
    readonly file: string,
    private readonly node = hostname(),
  ) {
    try {
      this.fd = openSync(file, 'w');
      this.begin();
    } catch (error) {
      this.failed(error);
    }
  }

  write(record: HandshakeRecord | StatusEvent): void {
    if (record.kind === 'status') return;
    const text = JSON.stringify(jaegerTrace(record, this.node));
    const trace = Buffer.from(`${this.traces === 0 ? '\n' : ',\n'}${text}`);
    if (this.fd === null) {
      this.failedWrites++;
      return;
    }
    try {
      if (!this.begun) this.begin();
      this.writeAt(Buffer.concat([trace, Buffer.from(closing)]), this.end);
      this.end += trace.length;
      this.traces++;
    } catch (error) {
      this.failed(error);
      if (this.begun) this.putClosingBack();
    }
  }

  close(): Promise<void> {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    return Promise.resolve();
  }

  private begin(): void {
    this.writeAt(Buffer.from(opening + closing), 0);
    this.begun = true;
  }

  private writeAt(bytes: Buffer, position: number): void {
    let written = 0;
    while (written < bytes.length)
      written += writeSync(
        this.fd as number,
        bytes,
        written,
        bytes.length - written,
        position + written,
      );
  }

  /**
   * After a write that stopped part way: the closing again where it was (those bytes were the old closing, so no new
   * space is needed) and the part after it cut off, so the file holds the traces before this one.
   */
  private putClosingBack(): void {
    try {
      this.writeAt(Buffer.from(closing), this.end);
      ftruncateSync(this.fd as number, this.end + closing.length);
    } catch {
      // Said already; the next write tries again.
    }
  }

  private failed(error: unknown): void {
    if (this.failedWrites++ === 0)
      process.stderr.write(
        `podwire: cannot write the Jaeger file ${this.file}: ${(error as Error).message} (free space or pass another --jaeger-json path); tracing goes on\n`,
      );
  }
}
