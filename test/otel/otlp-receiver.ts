// A real OTLP trace receiver inside the test process, so tests check the spans podwire puts on the wire.
//
// It speaks OTLP/HTTP (protobuf and JSON, gzip or not, POST /v1/traces) and OTLP/gRPC
// (TraceService/Export), decoding with the schema subset in ./proto. It is no collector: it keeps every
// span in memory and reports a body it cannot read as a 400 (HTTP) or INVALID_ARGUMENT (gRPC), noting why in
// `errors`. A test can make it misbehave as a collector in trouble does (`behave`, `down`, `up`): those answers
// are fakes of a collector's, made here because a real collector cannot be told to give them on cue; what
// podwire does when it meets them is real.
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import {
  Server as GrpcServer,
  ServerCredentials,
  type ServerUnaryCall,
  type sendUnaryData,
  status,
} from '@grpc/grpc-js';
import { loadSync, type MethodDefinition, type ServiceDefinition } from '@grpc/proto-loader';

export type OtlpProtocol = 'http/protobuf' | 'http/json' | 'grpc';

export type AttributeValue = string | number | boolean;

export interface ReceivedSpan {
  /** 32 lowercase hex digits. */
  traceId: string;
  /** 16 lowercase hex digits. */
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP's SpanKind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer (the API's + 1). */
  kind: number;
  /** Nanoseconds since the Unix epoch, exactly as sent. */
  startNs: bigint;
  endNs: bigint;
  /** Ints and doubles as numbers; bytes as hex; arrays and key/value lists as their JSON. */
  attributes: Record<string, AttributeValue>;
  status: { code: 'unset' | 'ok' | 'error'; message: string };
  events: { name: string; timeNs: bigint; attributes: Record<string, AttributeValue> }[];
  /** The attributes of the resource the span was sent under (service.name, ...). */
  resource: Record<string, AttributeValue>;
  /** The instrumentation scope's name. */
  scope: string;
}

export interface OtlpReceiver {
  protocol: OtlpProtocol;
  /**
   * What to give an exporter, `http://127.0.0.1:PORT`. OTLP/HTTP exporters append `/v1/traces` to it when it
   * comes as OTEL_EXPORTER_OTLP_ENDPOINT; given as a `url` option it must already end in `/v1/traces`.
   */
  endpoint: string;
  port: number;
  /** Every span received, in arrival order. */
  spans: ReceivedSpan[];
  /** Export requests that reached the receiver, read or not. */
  requests: number;
  /** Per request: its content type (`application/grpc` for gRPC). */
  contentTypes: string[];
  /** Per request: its content encoding (`identity` or `gzip`; `unknown` for gRPC, which grpc-js undoes). */
  contentEncodings: string[];
  /** Why requests were refused, one line each. */
  errors: string[];
  /** Per request, in arrival order: when it came, how it was answered, how many spans it carried. */
  answers: Answer[];
  /** Resolves, with the spans so far, once at least n arrived; rejects after timeoutMs saying how many did. */
  waitForSpans(n: number, timeoutMs?: number): Promise<ReceivedSpan[]>;
  /** How the requests from now on are answered (`{ kind: 'ok' }` to recover). */
  behave(behaviour: Behaviour): void;
  /** The port closed, as a collector that is down: connections refused. Spans received so far are kept. */
  down(): Promise<void>;
  /** Listening again on the same port, answering as `behave` last said. */
  up(): Promise<void>;
  close(): Promise<void>;
}

/**
 * How the receiver answers, as a collector in trouble would (fakes of its answers, see the top of this file):
 * - `refuse`: HTTP `status` (with `Retry-After: retryAfterSeconds` when given), as a collector whose memory
 *   limiter or queue refuses data; over gRPC 503 is UNAVAILABLE and 429 RESOURCE_EXHAUSTED. No span is kept.
 * - `slow`: every answer comes `delayMs` after the request; its spans count as received when answered.
 * - `partial`: OTLP partial success: the last `rejectSpans` spans of each request are rejected with `message`,
 *   the others kept.
 */
export type Behaviour =
  | { kind: 'ok' }
  | { kind: 'refuse'; status: 503 | 429; retryAfterSeconds?: number }
  | { kind: 'slow'; delayMs: number }
  | { kind: 'partial'; rejectSpans: number; message: string };

export interface Answer {
  /** Epoch ms the request arrived. */
  at: number;
  /** `ok`, `partial`, `refused 503`, `refused 429`, or `unreadable`. */
  answer: string;
  spans: number;
}

// ---- the request as decoded: protobuf (bytes, longs as strings) and OTLP/JSON (hex, strings or numbers) ----

/** Bytes from protobuf, hex from OTLP/JSON. */
type WireId = Uint8Array | string;
/** A decimal string from protobuf (longs: String) or OTLP/JSON; a number from JSON writers that use one. */
type WireInt64 = string | number;
/** A number, except in JSON, where protobuf's rules also allow the enum's name. */
type WireEnum = number | string;

interface WireAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: WireInt64;
  /** JSON may spell NaN and the infinities as strings. */
  doubleValue?: number | string;
  arrayValue?: { values?: WireAnyValue[] };
  kvlistValue?: { values?: WireKeyValue[] };
  /** Bytes from protobuf, base64 in JSON. */
  bytesValue?: Uint8Array | string;
}

interface WireKeyValue {
  key?: string;
  value?: WireAnyValue;
}

interface WireEvent {
  timeUnixNano?: WireInt64;
  name?: string;
  attributes?: WireKeyValue[];
}

interface WireSpan {
  traceId?: WireId;
  spanId?: WireId;
  parentSpanId?: WireId;
  name?: string;
  kind?: WireEnum;
  startTimeUnixNano?: WireInt64;
  endTimeUnixNano?: WireInt64;
  attributes?: WireKeyValue[];
  events?: WireEvent[];
  status?: { message?: string; code?: WireEnum };
}

interface WireExportRequest {
  resourceSpans?: {
    resource?: { attributes?: WireKeyValue[] };
    scopeSpans?: { scope?: { name?: string }; spans?: WireSpan[] }[];
  }[];
}

// ---- the schema ----

const protoRoot = fileURLToPath(new URL('./proto', import.meta.url));
const serviceFile = 'opentelemetry/proto/collector/trace/v1/trace_service.proto';
const serviceName = 'opentelemetry.proto.collector.trace.v1.TraceService';

let traceService: ServiceDefinition | undefined;

/** TraceService from ./proto, decoding ids as bytes and 64-bit times as decimal strings (then BigInt). */
function traceServiceDefinition(): ServiceDefinition {
  if (traceService === undefined) {
    const service = loadSync(serviceFile, {
      includeDirs: [protoRoot],
      keepCase: false,
      longs: String,
      enums: Number,
      bytes: Buffer,
      defaults: false,
      oneofs: true,
    })[serviceName];
    if (service === undefined || 'format' in service) {
      throw new Error(`${protoRoot}/${serviceFile} does not define ${serviceName}`);
    }
    traceService = service;
  }
  return traceService;
}

function exportMethod(): MethodDefinition<object, object> {
  const method = traceServiceDefinition().Export;
  if (method === undefined) throw new Error(`${serviceName} has no Export method`);
  return method;
}

// ---- from the wire to ReceivedSpan ----

function hexId(id: WireId | undefined, field: string): string {
  if (id === undefined) return '';
  if (typeof id !== 'string') return Buffer.from(id).toString('hex');
  if (!/^[0-9a-f]*$/i.test(id)) {
    throw new Error(
      `${field} ${JSON.stringify(id)} is not hex (OTLP/JSON sends ids as hex, not base64)`,
    );
  }
  return id.toLowerCase();
}

function nanos(value: WireInt64 | undefined, field: string): bigint {
  if (value === undefined) return 0n;
  try {
    return BigInt(value);
  } catch {
    throw new Error(`${field} ${JSON.stringify(value)} is not a whole number of nanoseconds`);
  }
}

const spanKinds = [
  'SPAN_KIND_UNSPECIFIED',
  'SPAN_KIND_INTERNAL',
  'SPAN_KIND_SERVER',
  'SPAN_KIND_CLIENT',
  'SPAN_KIND_PRODUCER',
  'SPAN_KIND_CONSUMER',
];
const statusCodes = ['unset', 'ok', 'error'] as const;
const statusCodeNames = ['STATUS_CODE_UNSET', 'STATUS_CODE_OK', 'STATUS_CODE_ERROR'];

function enumIndex(value: WireEnum | undefined, names: string[], field: string): number {
  if (value === undefined) return 0;
  const index = typeof value === 'number' ? value : names.indexOf(value);
  if (!Number.isInteger(index) || index < 0 || index >= names.length) {
    throw new Error(`${field} ${JSON.stringify(value)} is not one of ${names.join(', ')}`);
  }
  return index;
}

type PlainValue = AttributeValue | null | PlainValue[] | { [key: string]: PlainValue };

/** An AnyValue as plain JSON-able data; null when no value is set. */
function plainValue(value: WireAnyValue | undefined): PlainValue {
  if (value === undefined) return null;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return Number(value.doubleValue);
  if (value.bytesValue !== undefined) {
    return typeof value.bytesValue === 'string'
      ? Buffer.from(value.bytesValue, 'base64').toString('hex')
      : Buffer.from(value.bytesValue).toString('hex');
  }
  if (value.arrayValue !== undefined) return (value.arrayValue.values ?? []).map(plainValue);
  if (value.kvlistValue !== undefined) {
    return Object.fromEntries(
      (value.kvlistValue.values ?? []).map((kv) => [kv.key ?? '', plainValue(kv.value)]),
    );
  }
  return null;
}

/** Attributes with scalar values as they are, arrays and lists as JSON; empty values left out. */
function attributes(list: WireKeyValue[] | undefined): Record<string, AttributeValue> {
  const result: Record<string, AttributeValue> = {};
  for (const { key, value } of list ?? []) {
    const plain = plainValue(value);
    if (plain === null) continue;
    result[key ?? ''] = typeof plain === 'object' ? JSON.stringify(plain) : plain;
  }
  return result;
}

function receivedSpans(request: WireExportRequest): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const resourceSpans of request.resourceSpans ?? []) {
    const resource = attributes(resourceSpans.resource?.attributes);
    for (const scopeSpans of resourceSpans.scopeSpans ?? []) {
      const scope = scopeSpans.scope?.name ?? '';
      for (const span of scopeSpans.spans ?? []) {
        const what = `span ${JSON.stringify(span.name ?? '')}`;
        spans.push({
          traceId: hexId(span.traceId, `${what} traceId`),
          spanId: hexId(span.spanId, `${what} spanId`),
          parentSpanId: hexId(span.parentSpanId, `${what} parentSpanId`),
          name: span.name ?? '',
          kind: enumIndex(span.kind, spanKinds, `${what} kind`),
          startNs: nanos(span.startTimeUnixNano, `${what} startTimeUnixNano`),
          endNs: nanos(span.endTimeUnixNano, `${what} endTimeUnixNano`),
          attributes: attributes(span.attributes),
          status: {
            code: statusCodes[
              enumIndex(span.status?.code, statusCodeNames, `${what} status.code`)
            ] as ReceivedSpan['status']['code'],
            message: span.status?.message ?? '',
          },
          events: (span.events ?? []).map((event) => ({
            name: event.name ?? '',
            timeNs: nanos(event.timeUnixNano, `${what} event timeUnixNano`),
            attributes: attributes(event.attributes),
          })),
          resource,
          scope,
        });
      }
    }
  }
  return spans;
}

// ---- the receiver ----

/** What both transports share: the spans so far, the bookkeeping, and who waits for what. */
class SpanStore {
  readonly spans: ReceivedSpan[] = [];
  readonly answers: Answer[] = [];
  behaviour: Behaviour = { kind: 'ok' };
  requests = 0;
  readonly contentTypes: string[] = [];
  readonly contentEncodings: string[] = [];
  readonly errors: string[] = [];
  private readonly waiters = new Set<() => void>();

  request(contentType: string, contentEncoding: string): void {
    this.requests++;
    this.contentTypes.push(contentType);
    this.contentEncodings.push(contentEncoding);
  }

  /**
   * Answers a readable request as `behaviour` says: the spans kept, or a refusal, and after how long. Throws,
   * keeping none, when it cannot read one of the spans.
   */
  async take(request: WireExportRequest): Promise<Taken> {
    const spans = receivedSpans(request);
    const behaviour = this.behaviour;
    const answer: Answer = { at: Date.now(), answer: 'ok', spans: spans.length };
    this.answers.push(answer);
    if (behaviour.kind === 'refuse') {
      answer.answer = `refused ${behaviour.status}`;
      return { refused: behaviour.status, retryAfterSeconds: behaviour.retryAfterSeconds };
    }
    if (behaviour.kind === 'slow')
      await new Promise((resolve) => setTimeout(resolve, behaviour.delayMs));
    let rejected: Taken['rejected'];
    if (behaviour.kind === 'partial' && behaviour.rejectSpans > 0) {
      const count = Math.min(behaviour.rejectSpans, spans.length);
      spans.splice(spans.length - count, count);
      answer.answer = 'partial';
      rejected = { count, message: behaviour.message };
    }
    this.spans.push(...spans);
    for (const check of this.waiters) check();
    return { refused: null, rejected };
  }

  refuse(reason: string): void {
    this.errors.push(reason);
  }

  waitForSpans(n: number, timeoutMs: number): Promise<ReceivedSpan[]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.spans.length < n) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve([...this.spans]);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        const refused = this.errors.length > 0 ? `; refused: ${this.errors.join('; ')}` : '';
        reject(
          new Error(
            `expected ${n} spans within ${timeoutMs} ms, ${this.spans.length} arrived in ${this.requests} requests${refused}`,
          ),
        );
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }
}

/** What a request came to, for the transport to answer. */
interface Taken {
  refused: 503 | 429 | null;
  retryAfterSeconds?: number;
  rejected?: { count: number; message: string };
}

/** ExportTraceServiceResponse, with partial_success when spans were rejected. */
function exportResponse(taken: Taken): object {
  return taken.rejected
    ? {
        partialSuccess: {
          rejectedSpans: String(taken.rejected.count),
          errorMessage: taken.rejected.message,
        },
      }
    : {};
}

const defaultWaitMs = 5_000;
const grpcGracefulShutdownMs = 2_000;

/**
 * Starts a receiver on 127.0.0.1 (or `options.host`, e.g. the lab bridge's address for a pod): on `options.port`,
 * or on any free port.
 */
export async function startOtlpReceiver(
  protocol: OtlpProtocol,
  options: { port?: number; host?: string } = {},
): Promise<OtlpReceiver> {
  const store = new SpanStore();
  const host = options.host ?? '127.0.0.1';
  const listen = (at: number) =>
    protocol === 'grpc' ? listenGrpc(store, host, at) : listenHttp(store, host, at);
  let listening: Listening | null = await listen(options.port ?? 0);
  const port = listening.port;
  // A test closes it to play "collector down" and its cleanup closes it again.
  let closing: Promise<void> | undefined;
  const down = async () => {
    const was = listening;
    listening = null;
    await was?.close();
  };
  return {
    protocol,
    endpoint: `http://${host}:${port}`,
    port,
    spans: store.spans,
    get requests() {
      return store.requests;
    },
    contentTypes: store.contentTypes,
    contentEncodings: store.contentEncodings,
    errors: store.errors,
    answers: store.answers,
    waitForSpans: (n, timeoutMs = defaultWaitMs) => store.waitForSpans(n, timeoutMs),
    behave: (behaviour) => {
      store.behaviour = behaviour;
    },
    down,
    up: async () => {
      listening ??= await listen(port);
    },
    close: () => {
      closing ??= down();
      return closing;
    },
  };
}

interface Listening {
  port: number;
  close(): Promise<void>;
}

const protobufType = 'application/x-protobuf';
const jsonType = 'application/json';

async function listenHttp(store: SpanStore, host: string, port: number): Promise<Listening> {
  const server = createServer((request, response) => {
    handleHttp(store, request, response).catch((error: unknown) => {
      store.refuse(`internal: ${String(error)}`);
      if (!response.headersSent) response.writeHead(500);
      response.end();
    });
  });
  server.listen(port, host);
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      const closed = new Promise<void>((resolve, reject) =>
        server.close((error) => (error ? reject(error) : resolve())),
      );
      // The exporters keep connections alive; close them so the port is free to listen on again.
      server.closeAllConnections();
      await closed;
      // Let an exporter in this process see its connections end, as it would while a collector is down,
      // rather than reuse a dead one on its next export and retry a second later.
      await new Promise((resolve) => setTimeout(resolve, 20));
    },
  };
}

async function handleHttp(
  store: SpanStore,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const refuse = (code: number, reason: string) => {
    store.refuse(`${request.method} ${request.url}: ${reason}`);
    response.writeHead(code, { 'content-type': 'text/plain' });
    response.end(reason);
  };
  const path = new URL(request.url ?? '/', 'http://receiver').pathname.replace(/\/+$/, '');
  if (path !== '/v1/traces') return refuse(404, 'OTLP/HTTP traces go to POST /v1/traces');
  if (request.method !== 'POST') return refuse(405, 'OTLP/HTTP takes POST only');
  const contentType =
    (request.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  const contentEncoding = request.headers['content-encoding']?.trim().toLowerCase() || 'identity';
  store.request(contentType, contentEncoding);
  if (contentType !== protobufType && contentType !== jsonType) {
    return refuse(
      415,
      `content-type ${contentType || '(none)'}: send ${protobufType} or ${jsonType}`,
    );
  }
  if (contentEncoding !== 'identity' && contentEncoding !== 'gzip') {
    return refuse(415, `content-encoding ${contentEncoding}: send gzip or nothing`);
  }
  let body = Buffer.concat(chunks);
  let taken: Taken;
  try {
    if (contentEncoding === 'gzip') body = gunzipSync(body);
    taken = await store.take(
      contentType === protobufType
        ? (exportMethod().requestDeserialize(body) as WireExportRequest)
        : (JSON.parse(body.toString('utf8')) as WireExportRequest),
    );
  } catch (error) {
    store.answers.push({ at: Date.now(), answer: 'unreadable', spans: 0 });
    return refuse(400, `cannot read the ${contentType} body: ${(error as Error).message}`);
  }
  if (taken.refused !== null) {
    response.writeHead(taken.refused, {
      'content-type': 'text/plain',
      ...(taken.retryAfterSeconds === undefined
        ? {}
        : { 'retry-after': String(taken.retryAfterSeconds) }),
    });
    response.end(taken.refused === 429 ? 'too many requests' : 'unavailable');
    return;
  }
  // An ExportTraceServiceResponse: empty when all were accepted.
  const answer = exportResponse(taken);
  response.writeHead(200, { 'content-type': contentType });
  response.end(
    contentType === protobufType
      ? exportMethod().responseSerialize(answer)
      : JSON.stringify(answer),
  );
}

async function listenGrpc(store: SpanStore, host: string, port: number): Promise<Listening> {
  const server = new GrpcServer();
  server.addService(traceServiceDefinition(), {
    Export: (call: ServerUnaryCall<WireExportRequest, object>, callback: sendUnaryData<object>) => {
      store.request('application/grpc', 'unknown');
      store.take(call.request).then(
        (taken) => {
          if (taken.refused === 503) callback({ code: status.UNAVAILABLE, details: 'unavailable' });
          else if (taken.refused === 429)
            callback({ code: status.RESOURCE_EXHAUSTED, details: 'too many requests' });
          else callback(null, exportResponse(taken));
        },
        (error: unknown) => {
          const reason = `cannot read the request: ${(error as Error).message}`;
          store.answers.push({ at: Date.now(), answer: 'unreadable', spans: 0 });
          store.refuse(`gRPC Export: ${reason}`);
          callback({ code: status.INVALID_ARGUMENT, details: reason });
        },
      );
    },
  });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, ServerCredentials.createInsecure(), (error, actual) =>
      error ? reject(error) : resolve(actual),
    ),
  );
  return {
    port: bound,
    close: () =>
      new Promise((resolve) => {
        // Graceful first, as a collector stopping would; a call that hangs must not hang the test.
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, grpcGracefulShutdownMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}
