// The span processor between podwire and a collector: bounded, never blocks tracing, retries what the collector
// could not take yet, and counts every span it does not deliver.
// The SDK's BatchSpanProcessor drops silently when full and does not retry; podwire keeps spans across an outage
// (up to the queue's bound, dropping the oldest records' spans beyond it) and says how many it dropped and why.
import type { Context } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, Span, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace';
import { type DropReason, type ExportCounters, noDrops } from './drops.js';
import { describeError, ExportAttemptError, PartialSuccessError } from './exporter.js';
import { rootSpanName } from './spans.js';

export type { DropReason, ExportCounters } from './drops.js';

export interface ExportQueueOptions {
  /** Spans held while the collector is slow or away; beyond it the oldest records' spans are dropped and counted. */
  maxQueueSize: number;
  maxBatchSize: number;
  /** How long a partial batch waits for more spans. */
  scheduleDelayMs: number;
  /** An export that has not answered by then counts as failed, and the queue moves on. */
  exportTimeoutMs: number;
  /** Exports in flight at once (one while the collector is failing). */
  maxConcurrentExports: number;
  /** The wait after the first failed attempt; it doubles with each failure in a row, up to `maxBackoffMs`. */
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** A collector's Retry-After is honoured up to this. */
  maxRetryAfterMs: number;
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
    initialBackoffMs: 1000,
    maxBackoffMs: 10_000,
    maxRetryAfterMs: 30_000,
  };
}

export interface ExportListener {
  /** An export attempt failed; `retrying`: its spans are kept and sent again after a wait. */
  failed(error: string, retrying: boolean): void;
  /** Spans were dropped; `error` says why when the collector did. */
  dropped(count: number, reason: DropReason, error: string | null): void;
  /** An export went through after one or more failed. */
  resumed(): void;
  /** The counters moved (spans exported or dropped). */
  counted(): void;
}

/**
 * The first span of a record's trace: its root (every parent is set as remote, see record-tracer.ts, so the
 * name tells). The spans of a record reach the queue in one go, root first, so they lie together in it.
 */
const rootNames = new Set(Object.values(rootSpanName));
const startsRecord = (span: ReadableSpan) => rootNames.has(span.name);

/** Up to 20% either way, so that many podwires do not all come back to a collector at the same moment. */
const jitter = (ms: number) => Math.round(ms * (0.8 + Math.random() * 0.4));

export class ExportQueue implements SpanProcessor {
  /** In the order the spans ended, which a batch sent again keeps (see `failed`). */
  private queue: ReadableSpan[] = [];
  private readonly order = new WeakMap<ReadableSpan, number>();
  private ended = 0;
  private inFlight = new Set<(outcome: unknown) => void>();
  private timer: NodeJS.Timeout | null = null;
  private failing = false;
  /** No export starts before this (epoch ms): the backoff after a failure, or the collector's Retry-After. */
  private retryAt = 0;
  private backoffMs: number;
  private closed = false;
  /** Flushes waiting: every answer sends the next batch at once instead of after the delay. */
  private flushing = 0;
  private stopping: Promise<void> | null = null;
  private idleWaiters: (() => void)[] = [];
  private roomWaiters: (() => void)[] = [];
  readonly counters: ExportCounters = { exported: 0, dropped: noDrops() };

  constructor(
    private readonly exporter: SpanExporter,
    private readonly options: ExportQueueOptions,
    private readonly listener: ExportListener,
  ) {
    this.backoffMs = options.initialBackoffMs;
  }

  onStart(_span: Span, _parentContext: Context): void {}

  onEnd(span: ReadableSpan): void {
    if (this.closed) return;
    // The newest spans are worth more than the oldest: the collector gets the recent pods once it is back.
    if (this.queue.length >= this.options.maxQueueSize)
      this.drop(this.dropOldestRecord(), 'queue-full', null);
    this.order.set(span, this.ended++);
    this.queue.push(span);
    if (this.queue.length >= this.options.maxBatchSize) this.pump();
    else this.timer ??= setTimeout(() => this.pump(), this.options.scheduleDelayMs).unref();
  }

  /** Spans waiting, not counting those on their way. */
  get pending(): number {
    return this.queue.length;
  }

  /**
   * For a source that can wait (a replay): resolves when the queue has room for another batch; null when it has
   * room now, or when the collector is failing. A live trace never waits: the oldest spans are dropped and counted.
   */
  room(): Promise<void> | null {
    // A collector that refuses is not waited for: that would make a replay take the collector's outage.
    if (this.failing) return null;
    if (this.queue.length + this.options.maxBatchSize <= this.options.maxQueueSize) return null;
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /**
   * Takes the oldest record's spans out of the queue, all of them, so that the collector gets whole traces or
   * none; returns how many.
   */
  private dropOldestRecord(): number {
    let count = 0;
    do {
      this.queue.shift();
      count++;
    } while (this.queue.length > 0 && !startsRecord(this.queue[0] as ReadableSpan));
    return count;
  }

  private drop(count: number, reason: DropReason, error: string | null): void {
    if (count <= 0) return;
    this.counters.dropped[reason] += count;
    this.listener.dropped(count, reason, error);
    this.listener.counted();
  }

  private wakeRoomWaiters(): void {
    if (this.failing || this.queue.length + this.options.maxBatchSize <= this.options.maxQueueSize)
      for (const resolve of this.roomWaiters.splice(0)) resolve();
  }

  private pump(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const wait = this.retryAt - Date.now();
    if (wait > 0) {
      if (this.queue.length > 0) this.timer = setTimeout(() => this.pump(), wait).unref();
      this.wakeRoomWaiters();
      return;
    }
    // While the collector fails, one attempt at a time: the others would only fail too.
    const limit = this.failing ? 1 : this.options.maxConcurrentExports;
    while (this.queue.length > 0 && this.inFlight.size < limit) {
      this.send(this.queue.splice(0, this.options.maxBatchSize));
    }
    this.wakeRoomWaiters();
    if (this.queue.length > 0 && !this.timer && this.inFlight.size < limit) {
      this.timer = setTimeout(() => this.pump(), this.options.scheduleDelayMs).unref();
    }
    if (this.queue.length === 0 && this.inFlight.size === 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  private delivered(count: number): void {
    this.counters.exported += count;
    this.backoffMs = this.options.initialBackoffMs;
    this.retryAt = 0;
    if (this.failing) {
      this.failing = false;
      this.listener.resumed();
    }
    this.listener.counted();
  }

  /** Waits before the next attempt: the collector's Retry-After (bounded), else the backoff, which doubles. */
  private backOff(retryAfterMs: number | null): void {
    const wait =
      retryAfterMs !== null
        ? Math.min(retryAfterMs, this.options.maxRetryAfterMs)
        : jitter(this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, this.options.maxBackoffMs);
    this.retryAt = Math.max(this.retryAt, Date.now() + wait);
  }

  private failed(batch: ReadableSpan[], outcome: unknown): void {
    const message = describeError(outcome);
    const retrying = outcome instanceof ExportAttemptError && outcome.retryable && !this.closed;
    const wasFailing = this.failing;
    this.failing = true;
    if (retrying) {
      // Back in the queue where its spans were (two batches out at once may fail in either order), still within
      // its bound: what does not fit now is the oldest.
      const first = this.order.get(batch[0] as ReadableSpan) ?? 0;
      const at = this.queue.findIndex((span) => (this.order.get(span) ?? 0) > first);
      this.queue.splice(at === -1 ? this.queue.length : at, 0, ...batch);
      let over = 0;
      while (this.queue.length > this.options.maxQueueSize) over += this.dropOldestRecord();
      this.drop(over, 'queue-full', message);
    }
    this.listener.failed(message, retrying);
    if (!retrying) this.drop(batch.length, 'export-failed', message);
    this.backOff(outcome instanceof ExportAttemptError ? outcome.retryAfterMs : null);
    if (!wasFailing) this.wakeRoomWaiters();
  }

  private send(batch: ReadableSpan[]): void {
    const done = (outcome: unknown) => {
      if (!this.inFlight.delete(done)) return;
      clearTimeout(timeout);
      if (outcome === null) this.delivered(batch.length);
      else if (outcome instanceof PartialSuccessError) {
        const rejected = Math.min(outcome.rejectedSpans, batch.length);
        this.delivered(batch.length - rejected);
        this.drop(rejected, 'rejected', outcome.message);
      } else this.failed(batch, outcome);
      // The next batch goes at once when the queue is already full enough; otherwise after the delay.
      if (this.queue.length >= this.options.maxBatchSize || this.flushing > 0) this.pump();
      else if (this.queue.length > 0)
        this.timer ??= setTimeout(() => this.pump(), this.options.scheduleDelayMs).unref();
      else this.pump();
    };
    this.inFlight.add(done);
    const timeout = setTimeout(
      () => done(new Error(`no answer within ${this.options.exportTimeoutMs} ms`)),
      this.options.exportTimeoutMs,
    ).unref();
    try {
      this.exporter.export(batch, (result) =>
        done(
          result.code === ExportResultCode.SUCCESS
            ? null
            : (result.error ?? new Error('the export failed')),
        ),
      );
    } catch (error) {
      done(error);
    }
  }

  /** Sends everything queued now and waits for the answers, for at most `timeoutMs`. */
  async forceFlush(timeoutMs = this.options.exportTimeoutMs): Promise<void> {
    this.pump();
    if (this.queue.length === 0 && this.inFlight.size === 0) return;
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

  /** Flushes for at most `timeoutMs`; what is still queued or unanswered then is dropped and counted. */
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
    this.drop(left, 'export-failed', 'podwire stopped before the collector took them');
    // Requests still unanswered: the collector may take them yet, but podwire cannot know; counted as dropped.
    for (const done of [...this.inFlight])
      done(new Error('podwire stopped before the collector answered'));
    for (const resolve of this.roomWaiters.splice(0)) resolve();
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
