// `podwire trace` and `podwire replay`: the tracer from the command line.
import { setPriority } from 'node:os';
import type { Command } from 'commander';
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

/** NDJSON on stdout, and the trace file when asked for. */
function sinks(options: { jaegerJson?: string }): Sink[] {
  const all: Sink[] = [new NdjsonSink(process.stdout)];
  if (options.jaegerJson) all.push(new JaegerJsonSink(options.jaegerJson));
  return all;
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
    .option(
      '--plugin-probes <where>',
      "where to see the CNI plugins' netlink and stdout: auto (in their own code when every plugin allows it) or syscalls (system-wide syscall tracepoints: any plugin, at a cost to every process)",
      'auto',
    )
    .action(
      async (options: {
        json?: boolean;
        record?: string;
        runtimeBinary?: string[];
        cniBinDir?: string[];
        nice: number;
        pluginProbes: string;
        jaegerJson?: string;
      }) => {
        if (options.pluginProbes !== 'auto' && options.pluginProbes !== 'syscalls') {
          console.error(
            `podwire trace: --plugin-probes ${options.pluginProbes} is not a choice: use auto or syscalls`,
          );
          process.exit(2);
        }
        requireRoot('podwire trace');
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
          sinks(options),
        );
        await tracer.start();
        await new Promise<void>((resolve) => {
          const stop = () => resolve();
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
        await tracer.stop();
      },
    );

  program
    .command('replay')
    .description('replay a recording made with trace --record: the same records the live run gave')
    .argument('<file>', 'the recording')
    .option('--json', 'NDJSON on stdout')
    .option(...jaegerOption)
    .action(async (file: string, options: { jaegerJson?: string }) => {
      await replayFile(file, sinks(options));
    });
}
