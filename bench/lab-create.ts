// RunPodSandbox latency on the lab: `lab pods create --count 50 --parallel 10`, several rounds, medians across rounds.
import { labDown, labUp } from '../src/lab/lab.js';
import { labPaths } from '../src/lab/paths.js';
import { createPods, deletePods, percentile } from '../src/lab/pods.js';

const rounds = Number(process.env.ROUNDS ?? 5);
const count = Number(process.env.COUNT ?? 50);
const parallel = Number(process.env.PARALLEL ?? 10);
const quiet = () => undefined;

const median = (values: number[]) => percentile(values, 50) ?? Number.NaN;
const fmt = (value: number | null) => (value === null ? '-' : value.toFixed(1));

async function main(): Promise<void> {
  const paths = labPaths();
  const started = (await labUp(paths, {}, quiet)) === 'started';
  const p50s: number[] = [];
  const p95s: number[] = [];
  try {
    console.log(
      `lab-create: ${rounds} rounds of ${count} pods, ${parallel} at a time (RunPodSandbox ms)`,
    );
    console.log('round  ok  failed  p50    p95    max    wall_s');
    for (let round = 1; round <= rounds; round++) {
      const wall = performance.now();
      const pods = await createPods(
        paths,
        { count, parallel, namespace: 'bench', prefix: 'bench', withContainer: false },
        quiet,
      );
      const seconds = (performance.now() - wall) / 1000;
      const ok = pods.filter((pod) => !pod.error).map((pod) => pod.runPodSandboxMs);
      const p50 = percentile(ok, 50);
      const p95 = percentile(ok, 95);
      if (p50 !== null) p50s.push(p50);
      if (p95 !== null) p95s.push(p95);
      console.log(
        `${String(round).padEnd(6)} ${String(ok.length).padEnd(3)} ${String(pods.length - ok.length).padEnd(7)} ${fmt(p50).padEnd(6)} ${fmt(p95).padEnd(6)} ${fmt(percentile(ok, 100)).padEnd(6)} ${seconds.toFixed(2)}`,
      );
      await deletePods(paths, 'all', quiet);
    }
    console.log(`median over rounds: p50 ${fmt(median(p50s))} ms, p95 ${fmt(median(p95s))} ms`);
  } finally {
    if (started) await labDown(paths, quiet);
  }
}

main().catch((error: unknown) => {
  console.error(`lab-create: ${error instanceof Error ? error.message : error}`);
  process.exitCode = 1;
});
