// `podwire trace` and `podwire replay`: the tracer from the command line.

import { spawn } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync } from 'node:fs';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { attachDir } from '../attach/protocol.js';
import { nodeRoot } from '../binaries/discover.js';
import type { HandshakeRecord } from '../correlate/record.js';
import { cannotTraceMessage } from '../doctor/container.js';
import type { StatusEvent } from '../events.js';
import { nodeName } from '../node-name.js';
import type { Telemetry } from '../otel/telemetry.js';
import { niceEveryThread } from '../priority.js';
import { defaultPollMs } from '../probes/runner.js';
import { replayFile } from '../recording/replay.js';
import { JaegerJsonSink } from '../sinks/jaeger-json.js';
import { NdjsonSink, type Sink } from '../sinks/ndjson.js';
import { existingCniBinDirs, Tracer, traceDefaults } from '../trace.js';
import { collect, progress, requireRoot } from './output.js';

const jaegerOption = [
  '--jaeger-json <file>',
  "also write every handshake and teardown as a trace to FILE, which Jaeger's UI opens without a backend (Search, Upload)",
] as const;

const otlpOption = [
  '--otlp [endpoint]',
  'also send every handshake and teardown as a trace to an OpenTelemetry collector (default: the OTEL_EXPORTER_OTLP_* variables, else http://localhost:4318; protocol from OTEL_EXPORTER_OTLP_PROTOCOL: http/protobuf, http/json or grpc)',
] as const;

interface SinkOptions {
  jaegerJson?: string;
  otlp?: string | boolean;
  metrics?: string;
}

interface OpenSinks {
  sinks: Sink[];
  telemetry: Telemetry | null;
  /** Where traces and metrics go, for the timeline's header; null when neither is on. */
  exportState: string | null;
}

/** The timeline on a terminal (unless --json); NDJSON on stdout otherwise. */
function wantsTimeline(options: { json?: boolean; tui?: boolean }): boolean {
  if (options.tui) return true;
  return !options.json && process.stdout.isTTY === true && process.stdin.isTTY === true;
}

/** The first sink (NDJSON on stdout, or the timeline's), the trace file, the collector and the metrics when asked. */
async function openSinks(
  command: 'trace' | 'replay',
  options: SinkOptions,
  first: Sink,
): Promise<OpenSinks> {
  const sinks: Sink[] = [first];
  if (options.jaegerJson) sinks.push(new JaegerJsonSink(options.jaegerJson));
  if (!options.otlp && options.metrics === undefined)
    return { sinks, telemetry: null, exportState: null };
  // OpenTelemetry is loaded only when asked for: it is most of podwire's start-up time.
  const status = (event: StatusEvent) => {
    for (const sink of sinks) sink.write(event);
  };
  const where: string[] = [];
  let otlp: import('../sinks/otlp.js').OtlpSink | null = null;
  if (options.otlp) {
    const { OtlpSink } = await import('../sinks/otlp.js');
    const started = OtlpSink.start({
      endpoint: options.otlp === true ? undefined : options.otlp,
      waitForCollector: command === 'replay',
      status,
    });
    if ('error' in started) fail(command, started.error);
    otlp = started;
    sinks.push(otlp);
    where.push(`traces to ${otlp.url} (${otlp.protocol})`);
  }
  let telemetry: Telemetry | null = null;
  if (options.metrics !== undefined) {
    const { parseListenAddress, startTelemetry } = await import('../otel/telemetry.js');
    const { MetricsSink } = await import('../sinks/metrics.js');
    const listen = parseListenAddress(options.metrics);
    if ('error' in listen) fail(command, listen.error);
    const started = await startTelemetry({ metrics: listen, status });
    if ('error' in started) fail(command, started.error);
    telemetry = started;
    sinks.push(new MetricsSink(telemetry, () => otlp?.counters.dropped ?? null));
    where.push(`metrics at ${telemetry.metricsUrl}`);
  }
  process.stderr.write(`podwire ${command}: ${where.join('; ')}\n`);
  return { sinks, telemetry, exportState: where.join('; ') };
}

/** A sink that holds what it is given until its target exists, then passes everything on. */
class Relay implements Sink {
  private held: (HandshakeRecord | StatusEvent)[] = [];
  private target: Sink | null = null;
  to(target: Sink): void {
    this.target = target;
    for (const record of this.held.splice(0)) target.write(record);
  }
  write(record: HandshakeRecord | StatusEvent): void {
    if (this.target) this.target.write(record);
    else this.held.push(record);
  }
  close(): Promise<void> {
    return this.target?.close() ?? Promise.resolve();
  }
}

const stdoutClosed = new Error('the reader of stdout went away');

/** stdout-watch.c, built beside this module by `npm run build`. */
const stdoutWatch = fileURLToPath(new URL('./stdout-watch', import.meta.url));

/**
 * Calls `gone` once the reader of the pipe (or socket) on stdout goes away, even if podwire has nothing to write then (a quiet
 * node): a child that only watches the pipe exits when it breaks. Not a pipe, or no watcher built: nothing to do
 * here, and the next write's EPIPE says it.
 */
function watchStdoutReader(gone: () => void): void {
  try {
    // A shell's pipe, or the socket pair a program's spawn() gives its child.
    const stdout = fstatSync(1);
    if (!(stdout.isFIFO() || stdout.isSocket()) || !existsSync(stdoutWatch)) return;
    const watcher = spawn(stdoutWatch, [String(process.pid)], {
      stdio: ['ignore', 'inherit', 'ignore'],
    });
    watcher.once('exit', (code) => {
      if (code === 0) gone();
    });
    watcher.once('error', () => {});
    watcher.unref();
  } catch {
    // Not watched: the next line written finds out.
  }
}

/** Put first among a replay's sinks: ends the replay, before the record reaches any sink, once stdout is gone. */
function untilGone(stdout: NdjsonSink): Sink {
  return {
    write: () => {
      if (stdout.gone) throw stdoutClosed;
    },
    close: async () => {},
  };
}

/** The live view's socket, as one more sink; tracing goes on without it when it cannot be served. */
async function serveAttach(sinks: Sink[], exportState: string | null): Promise<void> {
  const { AttachServer } = await import('../attach/server.js');
  const served = await AttachServer.start({
    exportState,
    status: (event) => {
      for (const sink of sinks) sink.write(event);
    },
  });
  if ('error' in served)
    progress(
      `podwire trace: no live view (podwire attach): ${served.error}; tracing goes on (--no-attach-socket: do not try)`,
    );
  else sinks.push(served);
}

function fail(command: string, message: string): never {
  console.error(`podwire ${command}: ${message}`);
  process.exit(2);
}

export function registerTrace(program: Command): void {
  program
    .command('trace')
    .description('trace pod network handshakes on this node; NDJSON on stdout')
    .option('--json', 'NDJSON on stdout (the default when stdout is not a terminal)')
    .option('--tui', 'the live timeline (the default on a terminal)')
    .option(
      '--nice <n>',
      'CPU niceness of podwire and the probes it starts: tracing yields to the pods it watches',
      (v) => Number(v),
      10,
    )
    .option(
      '--record <file>',
      'also write the raw probe events to FILE, for podwire replay and bug reports',
    )
    .option(
      '--runtime-binary <path>',
      'a container runtime binary to probe (default: every running containerd)',
      collect,
    )
    .option(
      '--cni-bin-dir <dir>',
      `a directory of CNI plugins (default: ${traceDefaults.cniBinDirs.join(', ')})`,
      collect,
    )
    .option(...jaegerOption)
    .option(...otlpOption)
    .option(
      '--metrics <[host:]port>',
      'serve Prometheus metrics (handshake and phase latencies, outcomes, losses) on PORT; a bare port binds 127.0.0.1',
    )
    .option(
      '--plugin-probes <where>',
      "where to see the CNI plugins' netlink and stdout: auto (in their own code when every plugin allows it) or syscalls (system-wide syscall tracepoints: any plugin, at a cost to every process)",
      'auto',
    )
    .option(
      '--bpftrace-poll <ms>',
      'how often bpftrace reads its buffers; 0: it is woken for each event, as bpftrace alone does, which costs each traced process a wake-up per event',
      (v) => Number(v),
      defaultPollMs,
    )
    .option(
      '--no-attach-socket',
      `do not serve the live view (podwire attach) on a unix socket in ${attachDir}, which only root can open`,
    )
    .action(
      async (
        options: {
          json?: boolean;
          tui?: boolean;
          record?: string;
          runtimeBinary?: string[];
          cniBinDir?: string[];
          nice: number;
          pluginProbes: string;
          bpftracePoll: number;
          attachSocket: boolean;
        } & SinkOptions,
      ) => {
        if (options.pluginProbes !== 'auto' && options.pluginProbes !== 'syscalls') {
          fail(
            'trace',
            `--plugin-probes ${options.pluginProbes} is not a choice: use auto or syscalls`,
          );
        }
        if (
          !Number.isInteger(options.bpftracePoll) ||
          options.bpftracePoll < 0 ||
          options.bpftracePoll > 1000
        ) {
          fail(
            'trace',
            `--bpftrace-poll ${options.bpftracePoll} is not a number of milliseconds: give 0 to 1000 (default ${defaultPollMs})`,
          );
        }
        requireRoot('podwire trace');
        const cannotTrace = cannotTraceMessage(options.runtimeBinary ?? []);
        if (cannotTrace) fail('trace', cannotTrace);
        if (options.record) {
          try {
            closeSync(openSync(options.record, 'w'));
          } catch (error) {
            fail(
              'trace',
              `cannot write the recording ${options.record}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}: give --record a file in a writable directory`,
            );
          }
        }
        // The sinks are opened (and their options checked, with a one-line error) before the timeline takes the
        // terminal; what they say meanwhile waits for it.
        const timeline = wantsTimeline(options) ? new Relay() : null;
        // A reader of stdout that went away (`podwire trace | head -3`) stops the tracer as a SIGINT does.
        let readerLeft = () => {};
        const readerGone = new Promise<void>((resolve) => {
          readerLeft = resolve;
        });
        const { sinks, telemetry, exportState } = await openSinks(
          'trace',
          options,
          timeline ?? new NdjsonSink(process.stdout, () => readerLeft()),
        );
        if (!timeline) watchStdoutReader(() => readerLeft());
        if (options.attachSocket) await serveAttach(sinks, exportState);
        const tui = timeline
          ? (await import('../tui/index.js')).startTui({
              header: { node: nodeName(), source: 'live', exportState },
            })
          : null;
        if (tui) timeline?.to(tui.sink);
        // On a busy node the pods come first: records arrive a little later, and lost events, if any, are reported.
        if (Number.isFinite(options.nice)) niceEveryThread(options.nice);
        // Found once: with no readable first process it takes a look through /proc.
        const root = nodeRoot();
        const cniBinDirs = options.cniBinDir ?? existingCniBinDirs(root);
        const tracer = new Tracer(
          {
            cniBinDirs,
            nodeRoot: root,
            netnsDirs: traceDefaults.netnsDirs,
            runtimeBinaries: options.runtimeBinary ?? [],
            pluginProbes: options.pluginProbes,
            bpftracePollMs: options.bpftracePoll,
            ...(options.record ? { record: options.record } : {}),
          },
          sinks,
        );
        let lastEvents = 0;
        const rate = tui
          ? setInterval(() => {
              tui.setHeader({ eventsPerSecond: tracer.eventsSeen - lastEvents });
              lastEvents = tracer.eventsSeen;
            }, 1000)
          : null;
        let refused: Error | null = null;
        try {
          try {
            await tracer.start();
          } catch (error) {
            // What the start had begun (readers, bpftrace, the recording, the sinks) ends before the error is told.
            await tracer.stop();
            await telemetry?.shutdown();
            throw error;
          }
          await new Promise<void>((resolve) => {
            const stop = () => resolve();
            process.once('SIGINT', stop);
            process.once('SIGTERM', stop);
            void tui?.quit.then(stop);
            void readerGone.then(stop);
            void tracer.refused.then((error) => {
              refused = error;
              stop();
            });
          });
        } finally {
          if (rate) clearInterval(rate);
          if (tui) {
            tui.destroy();
            progress('podwire trace: stopping');
          }
        }
        await tracer.stop();
        await telemetry?.shutdown();
        if (refused) fail('trace', (refused as Error).message);
      },
    );

  program
    .command('replay')
    .description('replay a recording made with trace --record: the same records the live run gave')
    .argument('<file>', 'the recording')
    .option('--json', 'NDJSON on stdout (the default when stdout is not a terminal)')
    .option('--tui', 'the timeline (the default on a terminal)')
    .option('--instant', 'in the timeline: every record at once instead of at the recorded pace')
    .option(...jaegerOption)
    .option(...otlpOption)
    .action(
      async (
        file: string,
        options: SinkOptions & { json?: boolean; tui?: boolean; instant?: boolean },
      ) => {
        if (!wantsTimeline(options)) {
          // A reader of stdout that went away (`podwire replay FILE | head`) ends the replay at its next record.
          const stdout = new NdjsonSink(process.stdout, () => {});
          const { sinks, telemetry } = await openSinks('replay', options, stdout);
          try {
            await replayFile(file, [untilGone(stdout), ...sinks]);
          } catch (error) {
            if (error !== stdoutClosed) throw error;
            // replayFile stopped before closing the sinks: what they hold (the Jaeger file, the collector) is flushed.
            for (const sink of sinks) await sink.close();
          }
          await telemetry?.shutdown();
          return;
        }
        // The timeline plays the records itself, at their pace: the replay only collects them.
        const records: HandshakeRecord[] = [];
        const collected: Sink = {
          write: (record) => {
            if (record.kind !== 'status') records.push(record);
          },
          close: async () => {},
        };
        const { sinks, telemetry, exportState } = await openSinks('replay', options, collected);
        await replayFile(file, sinks);
        await telemetry?.shutdown();
        const { startTui } = await import('../tui/index.js');
        const tui = startTui({
          header: { node: hostname(), source: `replay of ${file}`, exportState },
          replay: { records, instant: options.instant === true },
        });
        await tui.quit;
        tui.destroy();
      },
    );
}
