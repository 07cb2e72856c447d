// `podwire demo`: the README's first command. For now it shows the lab node doing real pod network set-up.
import type { Command } from 'commander';
import { labDown, labStatus, labUp } from '../lab/lab.js';
import { labPaths } from '../lab/paths.js';
import { createPods, deletePods, percentile } from '../lab/pods.js';
import { ms, progress, requireRoot, table } from './output.js';

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'bring the lab up, create a few pods like a kubelet, show how they were wired, bring it down',
    )
    .option('--count <n>', 'how many pods', (v) => Number(v), 4)
    .action(async (options: { count: number }) => {
      requireRoot('podwire demo');
      const paths = labPaths();
      const started = (await labUp(paths, {}, progress)) === 'started';
      try {
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
          (pod) =>
            progress(
              `  ${pod.name}: ${pod.error ? `failed: ${pod.error}` : `${pod.ip} in ${ms(pod.runPodSandboxMs)}`}`,
            ),
        );
        const status = await labStatus(paths);
        const rows = status.pods
          .filter((pod) => pods.some((created) => created.sandboxId === pod.id))
          .map((pod) => {
            const created = pods.find((c) => c.sandboxId === pod.id);
            return [
              `${pod.namespace}/${pod.name}`,
              pod.id.slice(0, 13),
              pod.ip ?? '-',
              pod.netns ?? '-',
              ms(created?.runPodSandboxMs ?? null),
            ];
          });
        process.stdout.write(
          `\n${table(['POD', 'SANDBOX', 'IP', 'NETNS', 'RunPodSandbox'], rows)}\n\n`,
        );
        const latencies = pods.filter((p) => !p.error).map((p) => p.runPodSandboxMs);
        progress(
          `RunPodSandbox p50 ${ms(percentile(latencies, 50))}, p95 ${ms(percentile(latencies, 95))}`,
        );
        const ids = pods.flatMap((pod) => (pod.sandboxId ? [pod.sandboxId] : []));
        if (ids.length > 0) await deletePods(paths, ids, () => undefined);
        progress(`deleted the ${ids.length} demo pods`);
      } finally {
        if (started) await labDown(paths, progress);
      }
    });
}
