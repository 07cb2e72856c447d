// RunPodSandbox latency on the lab with `podwire trace` running vs without, interleaved (ABBA): medians and ratio.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { labDown, labUp } from '../src/lab/lab.js';
import { labPaths } from '../src/lab/paths.js';
import { createPods, deletePods, percentile } from '../src/lab/pods.js';

const rounds = Number(process.env.ROUNDS ?? 12);
const podsPerRound = Number(process.env.PODS ?? 10);
const quiet = () => undefined;

/** Starts the tracer as a user would and resolves once it says every probe is attached. */
function startTracer(): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn('node', ['dist/src/cli.js', 'trace'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const timer = setTimeout(() => {
      // Not left running: it would trace the next rounds, and hold its probes after the bench has gone.
      child.kill('SIGINT');
      reject(new Error('podwire trace did not become ready in 30 s'));
    }, 30_000);
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      if (line.includes('"state":"ready"')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('exit', (code) => reject(new Error(`podwire trace exited with ${code}`)));
  });
}

function stopTracer(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.removeAllListeners('exit');
    child.once('exit', () => resolve());
    child.kill('SIGINT');
  });
}

async function round(paths: ReturnType<typeof labPaths>): Promise<number[]> {
  // One pod at a time: the latency of a call, not of a queue.
  const pods = await createPods(
    paths,
    { count: podsPerRound, parallel: 1, namespace: 'bench', prefix: 'bench', withContainer: false },
    quiet,
  );
  const failed = pods.filter((pod) => pod.error);
  if (failed.length > 0) throw new Error(`pods failed: ${failed[0]?.error}`);
  await deletePods(paths, 'all', quiet);
  return pods.map((pod) => pod.runPodSandboxMs);
}

async function main(): Promise<void> {
  const paths = labPaths();
  const started = (await labUp(paths, {}, quiet)) === 'started';
  const without: number[] = [];
  const withTracer: number[] = [];
  const ratios: number[] = [];
  try {
    await round(paths); // warm-up: image snapshot, caches
    console.log(
      `runpodsandbox-overhead: ${rounds} interleaved round pairs of ${podsPerRound} pods, one at a time (RunPodSandbox ms)`,
    );
    console.log('pair  without_p50  with_p50  ratio  (odd pairs: without first; even: with first)');
    const tracedRound = async () => {
      const tracer = await startTracer();
      try {
        return await round(paths);
      } finally {
        await stopTracer(tracer);
      }
    };
    for (let pair = 1; pair <= rounds; pair++) {
      // Without first in odd pairs, with first in even ones: RunPodSandbox slows as the lab's containerd ages
      // over a run, and always measuring the tracer second would charge that drift to it.
      const tracerFirst = pair % 2 === 0;
      const traced = tracerFirst ? await tracedRound() : [];
      const plain = await round(paths);
      if (!tracerFirst) traced.push(...(await tracedRound()));
      without.push(...plain);
      withTracer.push(...traced);
      const a = percentile(plain, 50) ?? Number.NaN;
      const b = percentile(traced, 50) ?? Number.NaN;
      ratios.push(b / a);
      console.log(
        `${String(pair).padEnd(5)} ${a.toFixed(1).padEnd(12)} ${b.toFixed(1).padEnd(9)} ${(b / a).toFixed(3)}`,
      );
    }
    const a = percentile(without, 50) ?? Number.NaN;
    const b = percentile(withTracer, 50) ?? Number.NaN;
    console.log(
      `all ${without.length} + ${withTracer.length} sandboxes: median without ${a.toFixed(1)} ms, with ${b.toFixed(1)} ms, ratio of medians ${(b / a).toFixed(3)}`,
    );
    console.log(
      `median of per-pair ratios: ${(percentile(ratios, 50) ?? Number.NaN).toFixed(3)} (target <= 1.03)`,
    );
  } finally {
    if (started) await labDown(paths, quiet);
  }
}

main().catch((error: unknown) => {
  console.error(`runpodsandbox-overhead: ${error instanceof Error ? error.message : error}`);
  process.exitCode = 1;
});
