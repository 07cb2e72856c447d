// The OTLP span exporter for a destination: the SDK's own, one per protocol, with its retries handed to the queue.
//
// The SDK's HTTP exporters retry 429/502/503/504 and lost connections inside one export, for at most the export
// timeout (10 s), and then report a bare FAILED; its gRPC exporter does not retry at all; and both report a
// partial success (spans the collector rejected) as a success. podwire's queue keeps spans across an outage,
// backs off, and counts every span it does not deliver, so it needs each attempt's own answer: whether to retry,
// when (Retry-After), and how many spans were rejected. The SDK has no public hook for that: this swaps the
// transport inside the exporter (a private field of @opentelemetry/otlp-exporter-base 0.223, pinned in
// package.json) for one that makes a single attempt and says what it came to, as an error the queue reads.
import { OTLPTraceExporter as GrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import type { SpanExporter } from '@opentelemetry/sdk-trace';
import type { OtlpDestination } from './destination.js';

/** The exporter transport's answer and interface, as @opentelemetry/otlp-exporter-base declares them. */
type ExportResponse =
  | { status: 'success'; data?: Uint8Array }
  | { status: 'failure'; error: Error }
  | { status: 'retryable'; retryInMillis?: number; error?: Error };
interface IExporterTransport {
  send(data: Uint8Array, timeoutMillis: number): Promise<ExportResponse>;
  shutdown(): void;
}

/** An attempt the collector did not take: `retryable` when sending the same spans later may work. */
export class ExportAttemptError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    /** The collector's Retry-After, in ms, when it gave one. */
    readonly retryAfterMs: number | null = null,
  ) {
    super(message);
  }
}

/** The collector took the request but rejected some of its spans (OTLP partial_success): not to be sent again. */
export class PartialSuccessError extends Error {
  constructor(
    readonly rejectedSpans: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * gRPC codes worth another attempt, as the OTLP specification lists them (RESOURCE_EXHAUSTED is the collector's
 * "too many requests", which it sends when its memory limiter refuses data).
 */
const retryableGrpcCodes = new Map([
  [1, 'CANCELLED'],
  [4, 'DEADLINE_EXCEEDED'],
  [8, 'RESOURCE_EXHAUSTED'],
  [10, 'ABORTED'],
  [11, 'OUT_OF_RANGE'],
  [14, 'UNAVAILABLE'],
  [15, 'DATA_LOSS'],
]);

interface Serializer {
  deserializeResponse(data: Uint8Array): unknown;
}

/** The spans the collector said it rejected, and why; null when it took them all (or said nothing we can read). */
function rejectedBy(
  serializer: Serializer,
  data: Uint8Array | undefined,
): PartialSuccessError | null {
  if (!data || data.length === 0) return null;
  let response: { partialSuccess?: { rejectedSpans?: unknown; errorMessage?: unknown } };
  try {
    response = serializer.deserializeResponse(data) as typeof response;
  } catch {
    // A body that is not an ExportTraceServiceResponse: the status said success, and that is what counts.
    return null;
  }
  const rejected = Number(String(response?.partialSuccess?.rejectedSpans ?? 0));
  if (!Number.isSafeInteger(rejected) || rejected <= 0) return null;
  const why = response.partialSuccess?.errorMessage;
  return new PartialSuccessError(
    rejected,
    `the collector rejected ${rejected} spans${typeof why === 'string' && why ? ` (${why})` : ''}`,
  );
}

/** An error as one line: its message, and its code when the message does not say it (ECONNREFUSED, ...). */
export function describeError(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0)
    return describeError(error.errors[0]);
  if (!(error instanceof Error)) return String(error);
  const code = (error as NodeJS.ErrnoException).code;
  return typeof code === 'string' && !error.message.includes(code)
    ? `${error.message} (${code})`
    : error.message;
}

/** One attempt, no retry; what it came to goes back as a success or as one of the errors above. */
class SingleAttemptTransport implements IExporterTransport {
  constructor(
    private readonly inner: IExporterTransport,
    private readonly serializer: Serializer,
  ) {}

  async send(data: Uint8Array, timeoutMillis: number): Promise<ExportResponse> {
    let response: ExportResponse;
    try {
      response = await this.inner.send(data, timeoutMillis);
    } catch (error) {
      return { status: 'failure', error: new ExportAttemptError(describeError(error), true) };
    }
    switch (response.status) {
      case 'success': {
        const rejected = rejectedBy(this.serializer, response.data);
        return rejected ? { status: 'failure', error: rejected } : response;
      }
      case 'retryable': {
        // The HTTP transport says "retryable" for 429, 502, 503, 504, a lost connection and a timeout; only the
        // last two come with an error.
        const retryAfterMs =
          response.retryInMillis !== undefined && response.retryInMillis >= 0
            ? response.retryInMillis
            : null;
        const what = response.error
          ? describeError(response.error)
          : 'the collector is busy or unavailable (HTTP 429, 502, 503 or 504)';
        const after = retryAfterMs === null ? '' : `, retry after ${retryAfterMs / 1000} s`;
        return {
          status: 'failure',
          error: new ExportAttemptError(`${what}${after}`, true, retryAfterMs),
        };
      }
      case 'failure': {
        const code = (response.error as { code?: unknown }).code;
        const grpc = typeof code === 'number' ? retryableGrpcCodes.get(code) : undefined;
        const message = describeError(response.error);
        return {
          status: 'failure',
          error: new ExportAttemptError(
            grpc && !message.includes(grpc) ? `${grpc}: ${message}` : message,
            grpc !== undefined,
          ),
        };
      }
    }
  }

  shutdown(): void {
    this.inner.shutdown();
  }
}

interface DelegateInside {
  _transport?: IExporterTransport & { _transport?: IExporterTransport };
  _serializer?: Serializer;
}

/** Puts a SingleAttemptTransport where the exporter's delegate keeps its transport (and its retrying wrapper). */
function singleAttempts(exporter: SpanExporter): SpanExporter {
  const delegate = (exporter as unknown as { _delegate?: DelegateInside })._delegate;
  const transport = delegate?._transport;
  const serializer = delegate?._serializer;
  if (!delegate || !transport || typeof transport.send !== 'function' || !serializer) {
    throw new Error(
      'the OpenTelemetry OTLP exporter is not the version podwire was built with (no delegate transport)',
    );
  }
  // HTTP: RetryingTransport around the HTTP transport; gRPC: the gRPC transport itself.
  const inner =
    transport._transport && typeof transport._transport.send === 'function'
      ? transport._transport
      : transport;
  delegate._transport = new SingleAttemptTransport(inner, serializer);
  return exporter;
}

export function createSpanExporter(destination: OtlpDestination): SpanExporter {
  const config = destination.exporterUrl ? { url: destination.exporterUrl } : {};
  switch (destination.protocol) {
    case 'grpc':
      return singleAttempts(new GrpcExporter(config));
    case 'http/json':
      return singleAttempts(new JsonExporter(config));
    case 'http/protobuf':
      return singleAttempts(new ProtobufExporter(config));
  }
}
