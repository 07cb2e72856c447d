// One OpenTelemetry SDK per podwire process: traces to an OTLP collector and/or metrics for Prometheus, as asked.

import { createServer, type Server } from 'node:http';
import { type Meter, metrics, type Tracer, trace } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import {
  defaultResource,
  envDetector,
  hostDetector,
  resourceFromAttributes,
} from '@opentelemetry/resources';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { AlwaysOnSampler, type IdGenerator } from '@opentelemetry/sdk-trace';
import { type StatusEvent, status } from '../events.js';
import { nodeName } from '../node-name.js';
import { type OtlpDestination, otlpDestination, protocolFromEnv } from './destination.js';
import { type DropReason, dropReasons, type ExportCounters, noDrops } from './drops.js';
import { ExportQueue, type ExportQueueOptions, exportQueueOptionsFromEnv } from './export-queue.js';
import { createSpanExporter } from './exporter.js';

export interface TelemetryOptions {
  /** Present when traces go to a collector: `--otlp [ENDPOINT]`; no endpoint means the OTEL_* variables decide. */
  otlp?: {
    endpoint: string | undefined;
    /** Instead of the OTEL_BSP_* variables and podwire's defaults (tests: a shorter backoff). */
    queue?: Partial<ExportQueueOptions>;
  };
  /** Present when `--metrics [HOST:]PORT` asked for a Prometheus endpoint. */
  metrics?: { host: string; port: number };
  /** Status lines for the daemon's own output (collector down, drops, collector back). */
  status: (event: StatusEvent) => void;
  /** The export's counters, each time they move (spans exported or dropped). */
  counters?: (counters: ExportCounters) => void;
}

/** The ids a span gets are set just before it starts, so that the OTLP trace has the ids of the Jaeger file. */
export class RecordIds implements IdGenerator {
  traceId = '';
  spanId = '';
  generateTraceId(): string {
    return this.traceId;
  }
  generateSpanId(): string {
    return this.spanId;
  }
}

export interface Telemetry {
  tracer: Tracer | null;
  ids: RecordIds;
  queue: ExportQueue | null;
  destination: OtlpDestination | null;
  meter: Meter | null;
  /** Where Prometheus scrapes, e.g. http://127.0.0.1:9464/metrics. */
  metricsUrl: string | null;
  /**
   * What `/ready` on the metrics port answers (a readiness probe): 200 once every probe is attached, 503 with
   * `why` before that and while a probe program is down.
   */
  setReady(ready: boolean, why: string): void;
  /** Flushes what is queued (bounded) and stops the exporters and the metrics server. */
  shutdown(): Promise<void>;
}

/** `--metrics [HOST:]PORT`: a bare port binds 127.0.0.1, so that the metrics are not on the network unless asked. */
export function parseListenAddress(
  value: string,
): { host: string; port: number } | { error: string } {
  const match = /^(?:(\[[0-9a-f:.]+\]|[^:[\]]+):)?(\d{1,5})$/i.exec(value.trim());
  const port = Number(match?.[2]);
  if (!match || !Number.isInteger(port) || port < 1 || port > 65535) {
    return {
      error: `--metrics ${value} is not [HOST:]PORT: give a port such as 9464, or 0.0.0.0:9464 to serve every address`,
    };
  }
  return { host: (match[1] ?? '127.0.0.1').replace(/^\[|\]$/g, ''), port };
}

/**
 * What podwire says of the export, in status lines: an outage once when it starts (the first failed attempt) and
 * once when it ends (the next export that goes through, with what was dropped meanwhile), however many spans and
 * batches it takes; drops outside an outage (rejected spans, a queue that overflows while the collector is up)
 * at once the first time, then at most every 10 s as a sum, so that a collector in trouble does not flood.
 */
class ExportReporter {
  private outage: { since: number; error: string } | null = null;
  /** Dropped and not yet said: during an outage, until it ends; else until the next line. */
  private pending = noDrops();
  private lastError: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastReportAt = 0;

  constructor(
    private readonly destination: OtlpDestination,
    private readonly maxQueueSize: number,
    private readonly queue: () => ExportQueue,
    private readonly status: (event: StatusEvent) => void,
    private readonly onCounters: (counters: ExportCounters) => void,
  ) {}

  private droppedTotal(): number {
    const dropped = this.queue().counters.dropped;
    return dropReasons.reduce((sum, reason) => sum + dropped[reason], 0);
  }

  failed(error: string, retrying: boolean): void {
    if (this.outage) return;
    this.outage = { since: Date.now(), error };
    const then = retrying
      ? `podwire keeps the newest ${this.maxQueueSize} spans and sends them once it can`
      : 'the spans are dropped';
    this.status(
      status(
        'export-failed',
        `otlp: cannot deliver spans (${error}); is the collector at ${this.destination.url} up? ${then}; tracing goes on`,
        {
          exporter: 'otlp',
          error,
          retrying,
          dropped: this.take(),
          droppedTotal: this.droppedTotal(),
        },
      ),
    );
  }

  dropped(count: number, reason: DropReason, error: string | null): void {
    this.pending[reason] += count;
    if (this.outage) return;
    if (error) this.lastError = error;
    const wait = this.lastReportAt + 10_000 - Date.now();
    if (wait <= 0) this.report();
    else this.timer ??= setTimeout(() => this.report(), wait).unref();
  }

  resumed(): void {
    const outage = this.outage;
    this.outage = null;
    if (!outage) return;
    const dropped = this.take();
    const total = dropReasons.reduce((sum, reason) => sum + dropped[reason], 0);
    const seconds = Math.round((Date.now() - outage.since) / 100) / 10;
    this.status(
      status(
        'export-resumed',
        `otlp: the collector at ${this.destination.url} takes spans again after ${seconds} s; ${total === 0 ? 'no span was dropped' : `${total} spans were dropped meanwhile (${this.why(dropped)})`}`,
        {
          exporter: 'otlp',
          outageSeconds: seconds,
          dropped,
          droppedTotal: this.droppedTotal(),
        },
      ),
    );
  }

  counted(): void {
    this.onCounters(this.queue().counters);
  }

  private take(): Record<DropReason, number> {
    const taken = this.pending;
    this.pending = noDrops();
    return taken;
  }

  private why(dropped: Record<DropReason, number>): string {
    const said: Record<DropReason, string> = {
      'queue-full': 'pushed out of the queue by newer ones',
      'export-failed': 'refused',
      rejected: 'rejected by the collector',
    };
    return dropReasons
      .filter((reason) => dropped[reason] > 0)
      .map((reason) => `${dropped[reason]} ${said[reason]}`)
      .join(', ');
  }

  /** Says the drops not yet said; at the end, those of an outage still going on too. */
  report({ final = false } = {}): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.outage && !final) return;
    const dropped = this.take();
    const total = dropReasons.reduce((sum, reason) => sum + dropped[reason], 0);
    if (total === 0) return;
    this.lastReportAt = Date.now();
    const error = this.outage?.error ?? this.lastError;
    const while_ = this.outage
      ? `the collector at ${this.destination.url} did not take spans until podwire stopped`
      : `is the collector at ${this.destination.url} well? Tracing goes on`;
    this.status(
      status(
        'export-failed',
        `otlp: ${total} spans dropped (${this.why(dropped)}${error ? `: ${error}` : ''}); ${while_}`,
        {
          exporter: 'otlp',
          ...(error ? { error } : {}),
          dropped,
          droppedTotal: this.droppedTotal(),
        },
      ),
    );
  }
}

export async function startTelemetry(
  options: TelemetryOptions,
): Promise<Telemetry | { error: string }> {
  let destination: OtlpDestination | null = null;
  let queue: ExportQueue | null = null;
  let reporter: ExportReporter | null = null;
  if (options.otlp) {
    const protocol = protocolFromEnv();
    if (typeof protocol !== 'string') return protocol;
    const chosen = otlpDestination(options.otlp.endpoint, protocol);
    if ('error' in chosen) return chosen;
    destination = chosen;
    const queueOptions = { ...exportQueueOptionsFromEnv(), ...options.otlp.queue };
    const made = new ExportReporter(
      chosen,
      queueOptions.maxQueueSize,
      () => queue as ExportQueue,
      options.status,
      options.counters ?? (() => {}),
    );
    reporter = made;
    queue = new ExportQueue(createSpanExporter(chosen), queueOptions, made);
  }
  let prometheus: PrometheusExporter | null = null;
  let server: Server | null = null;
  const readiness = { ready: false, why: 'the probes are being attached' };
  if (options.metrics) {
    const { host, port } = options.metrics;
    // podwire serves the port itself: the exporter's server knows only /metrics, and a readiness probe needs /ready.
    const exporter = new PrometheusExporter({ preventServerStart: true });
    prometheus = exporter;
    const made = createServer((request, response) => {
      const path = (request.url ?? '/').split('?')[0];
      if (path === '/metrics') return exporter.getMetricsRequestHandler(request, response);
      response.setHeader('content-type', 'text/plain; charset=utf-8');
      if (path === '/ready') {
        response.statusCode = readiness.ready ? 200 : 503;
        response.end(readiness.ready ? 'ready\n' : `not ready: ${readiness.why}\n`);
        return;
      }
      response.statusCode = 404;
      response.end('podwire serves /metrics and /ready\n');
    });
    const listening = await new Promise<{ error: string } | null>((resolve) => {
      made.once('error', (error) =>
        resolve({
          error: `cannot serve metrics on ${host}:${port}: ${error.message}; choose another --metrics [HOST:]PORT`,
        }),
      );
      made.listen(port, host, () => resolve(null));
    });
    if (listening) {
      await queue?.shutdown(0);
      return listening;
    }
    server = made;
  }
  const ids = new RecordIds();
  const sdk = new NodeSDK({
    // podwire by default; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (the env detector) win.
    resource: defaultResource().merge(
      resourceFromAttributes({ 'service.name': 'podwire', 'k8s.node.name': nodeName() }),
    ),
    resourceDetectors: [hostDetector, envDetector],
    // Every handshake is worth its trace, whatever the runtime's sampling said of its parent.
    sampler: new AlwaysOnSampler(),
    idGenerator: ids,
    spanProcessors: queue ? [queue] : [],
    metricReaders: prometheus ? [prometheus] : [],
    logRecordProcessors: [],
    textMapPropagator: null,
    instrumentations: [],
  });
  sdk.start();
  const tracer = queue ? trace.getTracer('podwire') : null;
  const meter = prometheus ? metrics.getMeter('podwire') : null;
  const endpointPath = '/metrics';
  return {
    tracer,
    ids,
    queue,
    destination,
    meter,
    metricsUrl: options.metrics
      ? `http://${options.metrics.host.includes(':') ? `[${options.metrics.host}]` : options.metrics.host}:${options.metrics.port}${endpointPath}`
      : null,
    setReady(ready, why) {
      readiness.ready = ready;
      readiness.why = why;
    },
    async shutdown() {
      readiness.ready = false;
      readiness.why = 'podwire is stopping';
      // At most 10 s for a collector that is away: stopping must not hang on it.
      await queue?.shutdown(10_000);
      reporter?.report({ final: true });
      await sdk.shutdown().catch(() => undefined);
      server?.closeAllConnections();
      await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
    },
  };
}
