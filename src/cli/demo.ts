// `podwire demo`: the README's first command. The lab node, podwire tracing it, pods created like a kubelet would,
// and how each pod's network was wired, step by step. The live terminal timeline replaces the text output later.
import type { Command } from 'commander';
import type { HandshakeRecord } from '../correlate/record.js';
import type { StatusEvent } from '../events.js';
import { labDown, labUp } from '../lab/lab.js';
import { labPaths } from '../lab/paths.js';
import { createPods, deletePods } from '../lab/pods.js';
import { existingCniBinDirs, Tracer, traceDefaults } from '../trace.js';
import { ms, positiveInteger, progress, requireRoot } from './output.js';

/** Collects what the tracer emits, so that the demo can wait for it. */
class Collector {
  readonly records: HandshakeRecord[] = [];
  ready = false;

  write(record: HandshakeRecord | StatusEvent): void {
    if (record.kind === 'status') {
      if (record.state === 'ready') this.ready = true;
      if (record.state !== 'ready' && record.state !== 'stopped')
        progress(`podwire: ${record.message}`);
    } else this.records.push(record);
  }

  async close(): Promise<void> {}

  async until(what: string, done: () => boolean, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** One handshake as a text waterfall: each step indented as nested, a bar on the handshake's time scale. */
export function waterfall(record: HandshakeRecord, width = 40): string {
  const start = Date.parse(record.start);
  const total = Math.max(record.durationMs, 0.001);
  const depth = (id: number | null): number => {
    let d = 0;
    for (let at = id; at !== null; at = record.phases[at]?.parentId ?? null) d++;
    return d - 1;
  };
  const lines = [
    `${record.pod.namespace}/${record.pod.name}  ${record.outcome}  ${ms(record.durationMs)}  ip ${record.podIP ?? '-'}  veth ${record.hostVeth ?? '-'}  sandbox ${record.sandboxId?.slice(0, 12) ?? '-'}`,
  ];
  for (const phase of record.phases) {
    if (phase.name.startsWith('rtnetlink ')) continue;
    const offset = Math.max(0, Math.floor(((Date.parse(phase.start) - start) / total) * width));
    const length = Math.max(1, Math.round(((phase.durationMs ?? 0) / total) * width));
    const bar = `${' '.repeat(Math.min(offset, width - 1))}${'█'.repeat(Math.min(length, width - Math.min(offset, width - 1)))}`;
    const label = `${'  '.repeat(depth(phase.id))}${phase.name}`;
    lines.push(
      `  ${label.padEnd(28)} ${bar.padEnd(width)} ${ms(phase.durationMs)}${phase.error ? `  ${phase.error}` : ''}`,
    );
  }
  if (record.error) lines.push(`  failed in ${record.error.phase}: ${record.error.message}`);
  for (const deviation of record.deviations)
    lines.push(`  differs from the textbook: ${deviation}`);
  return lines.join('\n');
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'bring the lab up, trace it, create pods like a kubelet, show how each was wired, bring it down',
    )
    .option('--count <n>', 'how many pods', positiveInteger('--count'), 4)
    .action(async (options: { count: number }) => {
      requireRoot('podwire demo');
      const paths = labPaths();
      const started = (await labUp(paths, {}, progress)) === 'started';
      const collector = new Collector();
      const tracer = new Tracer(
        {
          cniBinDirs: existingCniBinDirs(),
          netnsDirs: traceDefaults.netnsDirs,
          runtimeBinaries: [],
        },
        [collector],
      );
      try {
        progress('starting podwire trace');
        await tracer.start();
        await collector.until('podwire to attach its probes', () => collector.ready);
        progress(`creating ${options.count} pods, 2 at a time, over CRI as a kubelet would`);
        const pods = await createPods(
          paths,
          {
            count: options.count,
            parallel: 2,
            namespace: 'demo',
            prefix: 'web',
            withContainer: false,
          },
          () => undefined,
        );
        const ids = pods.flatMap((pod) => (pod.sandboxId ? [pod.sandboxId] : []));
        await collector.until('the handshake records', () =>
          ids.every((id) => collector.records.some((r) => r.sandboxId === id)),
        );
        for (const id of ids) {
          const record = collector.records.find(
            (r) => r.kind === 'handshake' && r.sandboxId === id,
          );
          if (record) process.stdout.write(`\n${waterfall(record)}\n`);
        }
        await deletePods(paths, ids, () => undefined);
        await collector.until('the teardown records', () =>
          ids.every((id) =>
            collector.records.some((r) => r.kind === 'teardown' && r.sandboxId === id),
          ),
        );
        const teardowns = collector.records.filter((r) => r.kind === 'teardown');
        process.stdout.write(
          `\n${teardowns.length} teardowns traced: ${teardowns.map((r) => `${r.pod.name} ${ms(r.durationMs)}`).join(', ')}\n\n`,
        );
      } finally {
        await tracer.stop();
        if (started) await labDown(paths, progress);
      }
    });
}
