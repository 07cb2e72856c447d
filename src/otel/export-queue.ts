// The span processor between podwire and a collector: bounded, never blocks tracing, and counts every span it drops.
// The SDK's BatchSpanProcessor drops silently when full; podwire must say how many and why (a status line, a metric).
import type { Context } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, Span, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace';

export type DropReason = 'queue-full' | 'export-failed';

export interface ExportQueueOptions {
  /** Spans held while the collector is slow or away; more are dropped and counted. */
  maxQueueSize: number;
  maxBatchSize: number;
  /** How long a partial batch waits for more spans. */
  scheduleDelayMs: number;
  /** An export that has not answered by then counts as failed, and the queue moves on. */
  exportTimeoutMs: number;
  /** Exports in flight at once. */
  maxConcurrentExports: number;
}

/** The standard OTEL_BSP_* variables, with podwire's defaults where they are unset or not numbers. */
export function exportQueueOptionsFromEnv(): ExportQueueOptions {
  const number = (name: string, fallback: number) => {
    const value = Number(process.env[name]);
    return Number.isInteger(value) && value > 0 ? value : fallback;
  };
  const maxQueueSize = number('OTEL_BSP_MAX_QUEUE_SIZE', 4096);
  return {
    maxQueueSize,
    maxBatchSize: Math.min(maxQueueSize, number('OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 512)),
    scheduleDelayMs: number('OTEL_BSP_SCHEDULE_DELAY', 1000),
    exportTimeoutMs: number('OTEL_BSP_EXPORT_TIMEOUT', 30_000),
    maxConcurrentExports: 2,
  };
}

export interface ExportCounters {
  exported: number;
  dropped: Record<DropReason, number>;
}

export interface ExportListener {
  /** Spans were dropped; `error` is the export's own message when the collector failed. */
  dropped(count: number, reason: DropReason, error: string | null): void;
  /** An export went through after one or more failed. */
  resumed(): void;
}

export class ExportQueue implements SpanProcessor {
  private queue: ReadableSpan[] = [];
  private inFlight = 0;
  private timer: NodeJS.Timeout | null = null;
  private failing = false;
  private closed = false;
  /** Flushes waiting: every answer sends the next batch at once instead of after the delay. */
  private flushing = 0;
  private stopping: Promise<void> | null = null;
  private idleWaiters: (() => void)[] = [];
  private roomWaiters: (() => void)[] = [];
  readonly counters: ExportCounters = {
    exported: 0,
    dropped: { 'queue-full': 0, 'export-failed': 0 },
  };

  constructor(
    private readonly exporter: SpanExporter,
    private readonly options: ExportQueueOptions,
    private readonly listener: ExportListener,
  ) {}

  onStart(_span: Span, _parentContext: Context): void {}

  onEnd(span: ReadableSpan): void {
    if (this.closed) return;
    if (this.queue.length >= this.options.maxQueueSize) {
      this.drop(1, 'queue-full', null);
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= this.options.maxBatchSize) this.pump();
    else this.timer ??= setTimeout(() => this.pump(), this.options.scheduleDelayMs).unref();
  }

  /** Spans waiting or on their way. */
  get pending(): number {
    return this.queue.length;
  }

  /**
   * For a source that can wait (a replay): resolves when the queue has room for another batch; null when it has
   * room now, or when the collector is failing. A live trace never waits: it drops and counts.
   */
  room(): Promise<void> | null {
    // A collector that refuses is not waited for: that would make a replay take the retries' time per batch.
    if (this.failing) return null;
    if (this.queue.length + this.options.maxBatchSize <= this.options.maxQueueSize) return null;
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  private drop(count: number, reason: DropReason, error: string | null): void {
    this.counters.dropped[reason] += count;
    this.listener.dropped(count, reason, error);
  }

  private pump(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    while (this.queue.length > 0 && this.inFlight < this.options.maxConcurrentExports) {
      this.send(this.queue.splice(0, this.options.maxBatchSize));
    }
    if (this.queue.length + this.options.maxBatchSize <= this.options.maxQueueSize) {
      for (const resolve of this.roomWaiters.splice(0)) resolve();
    }
    if (this.queue.length > 0 && !this.timer && this.inFlight < this.options.maxConcurrentExports) {
      this.timer = setTimeout(() => this.pump(), this.options.scheduleDelayMs).unref();
    }
    if (this.queue.length === 0 && this.inFlight === 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  private send(batch: ReadableSpan[]): void {
    this.inFlight++;
    let answered = false;
    const done = (ok: boolean, error: string | null) => {
      if (answered) return;
      answered = true;
      clearTimeout(timeout);
      this.inFlight--;
      if (ok) {
        this.counters.exported += batch.length;
        if (this.failing) {
          this.failing = false;
          this.listener.resumed();
        }
      } else {
        this.failing = true;
        this.drop(batch.length, 'export-failed', error);
        for (const resolve of this.roomWaiters.splice(0)) resolve();
      }
      // The next batch goes at once when the queue is already full enough; otherwise after the delay.
      if (this.queue.length >= this.options.maxBatchSize || this.flushing > 0) this.pump();
      else if (this.queue.length > 0)
        this.timer ??= setTimeout(() => this.pump(), this.options.scheduleDelayMs).unref();
      else this.pump();
    };
    const timeout = setTimeout(
      () => done(false, `no answer within ${this.options.exportTimeoutMs} ms`),
      this.options.exportTimeoutMs,
    ).unref();
    try {
      this.exporter.export(batch, (result) =>
        done(
          result.code === ExportResultCode.SUCCESS,
          result.error ? describeError(result.error) : null,
        ),
      );
    } catch (error) {
      done(false, describeError(error));
    }
  }

  /** Sends everything queued now and waits for the answers, for at most `timeoutMs`. */
  async forceFlush(timeoutMs = this.options.exportTimeoutMs): Promise<void> {
    this.pump();
    if (this.queue.length === 0 && this.inFlight === 0) return;
    this.flushing++;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    this.flushing--;
  }

  /** Flushes for at most `timeoutMs`; what is still queued then is dropped and counted. */
  shutdown(timeoutMs = this.options.exportTimeoutMs): Promise<void> {
    // The SDK shuts its processors down too, after podwire did: once is enough.
    this.stopping ??= this.stop(timeoutMs);
    return this.stopping;
  }

  private async stop(timeoutMs: number): Promise<void> {
    // A collector that is refusing gets a short last chance, not the whole timeout.
    await this.forceFlush(this.failing ? Math.min(timeoutMs, 2000) : timeoutMs);
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const left = this.queue.length;
    this.queue = [];
    if (left > 0)
      this.drop(left, 'export-failed', 'podwire stopped before the collector took them');
    for (const resolve of this.roomWaiters.splice(0)) resolve();
    // The exporter's shutdown waits for requests still retrying; what they carry is counted as dropped already.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.exporter.shutdown().catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, 1000);
      }),
    ]);
    clearTimeout(timer);
  }
}

export function describeError(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0)
    return describeError(error.errors[0]);
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code && !error.message.includes(code) ? `${error.message} (${code})` : error.message;
  }
  return String(error);
}
