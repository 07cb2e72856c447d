// The OTLP sink (--otlp): hands each handshake and teardown to the export worker, which sends it as one trace.
// Bounded both ways: a live trace never waits (records beyond the bound are dropped and counted); a replay waits.
import { Worker } from 'node:worker_threads';
import type { HandshakeRecord } from '../correlate/record.js';
import { type StatusEvent, status } from '../events.js';
import { type OtlpProtocol, otlpDestination, protocolFromEnv } from '../otel/destination.js';
import { type DropReason, type ExportCounters, noDrops } from '../otel/drops.js';
import { recordText, type Sink } from './ndjson.js';

export interface ExportWorkerSetup {
  endpoint: string | undefined;
  /** A replay: acknowledge a batch only when the collector has taken enough to make room. */
  waitForCollector: boolean;
}

/** Records go as their NDJSON text, one a line: a string crosses to the thread far cheaper than objects do. */
export type ExportWorkerRequest =
  | { type: 'records'; count: number; text: string }
  | { type: 'stop' };

export type ExportWorkerReply =
  | { type: 'error'; message: string }
  | { type: 'status'; event: StatusEvent }
  | { type: 'ack'; records: number; counters: ExportCounters }
  | { type: 'counters'; counters: ExportCounters }
  | { type: 'stopped'; counters: ExportCounters };

export interface OtlpSinkOptions extends ExportWorkerSetup {
  status: (event: StatusEvent) => void;
}

/** Records handed to the worker and not yet made into spans: a replay waits above this, a live trace drops. */
const maxUnacknowledged = { replay: 1024, live: 20_000 };
const batchSize = 64;

export class OtlpSink implements Sink {
  private batch: string[] = [];
  private posted = 0;
  private acknowledged = 0;
  private postScheduled = false;
  private waiters: (() => void)[] = [];
  /** Spans of records this side dropped before they reached the worker. */
  private dropped = 0;
  /** Said once each time the worker falls behind; said again only after it has caught up. */
  private behindSaid = false;
  private stopped: Promise<void> | null = null;
  /** What the worker said last, plus the records this side dropped before they reached it. */
  counters: ExportCounters = { exported: 0, dropped: noDrops() };

  private constructor(
    private readonly worker: Worker,
    private readonly options: OtlpSinkOptions,
    readonly url: string,
    readonly protocol: OtlpProtocol,
  ) {
    worker.on('message', (message: ExportWorkerReply) => this.reply(message));
  }

  /**
   * Checks where the traces go (a wrong protocol or endpoint is said at once) and starts the export thread. The
   * thread loads the SDK while tracing starts: records wait for it in its message queue.
   */
  static start(options: OtlpSinkOptions): OtlpSink | { error: string } {
    const protocol = protocolFromEnv();
    if (typeof protocol !== 'string') return protocol;
    const destination = otlpDestination(options.endpoint, protocol);
    if ('error' in destination) return destination;
    const setup: ExportWorkerSetup = {
      endpoint: options.endpoint,
      waitForCollector: options.waitForCollector,
    };
    const worker = new Worker(new URL('../otel/export-worker.js', import.meta.url), {
      workerData: setup,
    });
    const failed = (message: string) =>
      options.status(
        status(
          'export-failed',
          `otlp: the export thread failed (${message}); traces are not sent, tracing goes on`,
          {
            exporter: 'otlp',
          },
        ),
      );
    worker.on('error', (error) => failed(error.message));
    worker.on('message', (message: ExportWorkerReply) => {
      if (message.type === 'error') failed(message.message);
    });
    return new OtlpSink(worker, options, destination.url, destination.protocol);
  }

  private reply(message: ExportWorkerReply): void {
    if (message.type === 'status') this.options.status(message.event);
    if (message.type === 'ack' || message.type === 'stopped' || message.type === 'counters') {
      this.counters = {
        exported: message.counters.exported,
        dropped: {
          ...message.counters.dropped,
          'queue-full': message.counters.dropped['queue-full'] + this.dropped,
        },
      };
    }
    if (message.type === 'ack') {
      this.acknowledged += message.records;
      if (this.unacknowledged <= maxUnacknowledged.live / 2) this.behindSaid = false;
      if (this.unacknowledged <= maxUnacknowledged.replay / 2)
        for (const resolve of this.waiters.splice(0)) resolve();
    }
  }

  private get unacknowledged(): number {
    return this.posted + this.batch.length - this.acknowledged;
  }

  write(record: HandshakeRecord | StatusEvent): void {
    if (record.kind === 'status' || this.stopped) return;
    if (!this.options.waitForCollector && this.unacknowledged >= maxUnacknowledged.live) {
      this.drop(record.phases.length + 1);
      return;
    }
    this.batch.push(recordText(record));
    if (this.batch.length >= batchSize) this.post();
    else if (!this.postScheduled) {
      this.postScheduled = true;
      setImmediate(() => this.post());
    }
  }

  private drop(spans: number): void {
    this.dropped += spans;
    this.counters.dropped['queue-full'] += spans;
    if (this.behindSaid) return;
    this.behindSaid = true;
    this.options.status(
      status(
        'export-failed',
        `otlp: spans dropped: the export thread is ${this.unacknowledged} records behind; the records it has no room for are not sent until it catches up (counted in podwire_spans_dropped_total); tracing goes on`,
        {
          exporter: 'otlp',
          dropped: { ...noDrops(), 'queue-full': spans } satisfies Record<DropReason, number>,
        },
      ),
    );
  }

  private post(): void {
    this.postScheduled = false;
    if (this.batch.length === 0) return;
    const request: ExportWorkerRequest = {
      type: 'records',
      count: this.batch.length,
      text: this.batch.join('\n'),
    };
    this.posted += this.batch.length;
    this.batch = [];
    this.worker.postMessage(request);
  }

  backlog(): Promise<void> | null {
    if (this.unacknowledged <= maxUnacknowledged.replay) return null;
    this.post();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Sends what is left, lets the worker flush (it gives the collector at most 10 s), and ends it. */
  close(): Promise<void> {
    this.stopped ??= (async () => {
      this.post();
      const done = new Promise<void>((resolve) =>
        this.worker.on('message', (message: ExportWorkerReply) => {
          if (message.type === 'stopped') resolve();
        }),
      );
      const request: ExportWorkerRequest = { type: 'stop' };
      this.worker.postMessage(request);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise((resolve) => (timer = setTimeout(resolve, 15_000)))]);
      clearTimeout(timer);
      for (const resolve of this.waiters.splice(0)) resolve();
      await this.worker.terminate();
    })();
    return this.stopped;
  }
}
