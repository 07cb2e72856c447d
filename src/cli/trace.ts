// `podwire trace` and `podwire replay`: the tracer from the command line.
import { setPriority } from 'node:os';
import type { Command } from 'commander';
import type { StatusEvent } from '../events.js';
import type { Telemetry } from '../otel/telemetry.js';
import { replayFile } from '../replay.js';
import { JaegerJsonSink } from '../sinks/jaeger-json.js';
import { NdjsonSink, type Sink } from '../sinks/ndjson.js';
import { existingCniBinDirs, Tracer, traceDefaults } from '../trace.js';
import { requireRoot } from './output.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

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

/** NDJSON on stdout, and the trace file, the collector and the metrics endpoint when asked for. */
async function openSinks(
  command: 'trace' | 'replay',
  options: SinkOptions,
): Promise<{ sinks: Sink[]; telemetry: Telemetry | null }> {
  const sinks: Sink[] = [new NdjsonSink(process.stdout)];
  if (options.jaegerJson) sinks.push(new JaegerJsonSink(options.jaegerJson));
  if (!options.otlp && options.metrics === undefined) return { sinks, telemetry: null };
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
  return { sinks, telemetry };
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
    .action(
      async (
        options: {
          json?: boolean;
          record?: string;
          runtimeBinary?: string[];
          cniBinDir?: string[];
          nice: number;
          pluginProbes: string;
        } & SinkOptions,
      ) => {
        if (options.pluginProbes !== 'auto' && options.pluginProbes !== 'syscalls') {
          fail(
            'trace',
            `--plugin-probes ${options.pluginProbes} is not a choice: use auto or syscalls`,
          );
        }
        requireRoot('podwire trace');
        const { sinks, telemetry } = await openSinks('trace', options);
        // Lower priority for podwire, and for the bpftrace and readers it starts (they inherit it): on a busy node
        // the pods come first; records arrive a little later and lost events, if any, are reported.
        if (Number.isFinite(options.nice))
          setPriority(0, Math.max(-20, Math.min(19, options.nice)));
        const cniBinDirs = options.cniBinDir ?? existingCniBinDirs();
        const tracer = new Tracer(
          {
            cniBinDirs,
            netnsDirs: traceDefaults.netnsDirs,
            runtimeBinaries: options.runtimeBinary ?? [],
            pluginProbes: options.pluginProbes,
            ...(options.record ? { record: options.record } : {}),
          },
          sinks,
        );
        await tracer.start();
        await new Promise<void>((resolve) => {
          const stop = () => resolve();
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
        await tracer.stop();
        await telemetry?.shutdown();
      },
    );

  program
    .command('replay')
    .description('replay a recording made with trace --record: the same records the live run gave')
    .argument('<file>', 'the recording')
    .option('--json', 'NDJSON on stdout')
    .option(...jaegerOption)
    .option(...otlpOption)
    .action(async (file: string, options: SinkOptions) => {
      const { sinks, telemetry } = await openSinks('replay', options);
      await replayFile(file, sinks);
      await telemetry?.shutdown();
    });
}
