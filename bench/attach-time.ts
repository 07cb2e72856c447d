// How long `podwire trace` takes to be useful: from spawning it to its `ready` status line, several runs, median.
import { cpus, loadavg, release } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { median } from './median.js';
import {
  projectRoot,
  type RunningTrace,
  requireTraceable,
  startTrace,
  stopTrace,
  traceArgs,
} from './podwire-trace.js';

const runs = Number(process.env.RUNS ?? 5);
const targetSeconds = 5;

async function main(): Promise<void> {
  const root = projectRoot();
  requireTraceable(root);
  const args = traceArgs(root);
  console.log(`attach-time: ${runs} runs of podwire trace ${args.join(' ')}, spawn to ready`);
  console.log(
    `machine: ${cpus().length} CPUs, kernel ${release()}, node ${process.version}, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const times: number[] = [];
  let trace: RunningTrace | null = null;
  try {
    for (let run = 1; run <= runs; run++) {
      await sleep(1000);
      trace = await startTrace(root, args);
      const ready = trace.readyMs;
      // What it said on the way, with when: where the time goes (runtime inspection, then bpftrace attaching).
      const steps = trace.statuses
        .map((s) => `${s.state} ${(s.ms / 1000).toFixed(2)} s`)
        .join(', ');
      const stopped = await stopTrace(trace);
      trace = null;
      times.push(ready);
      console.log(
        `run ${run}: ready after ${(ready / 1000).toFixed(2)} s (${steps}); stopped in ${(stopped.ms / 1000).toFixed(2)} s${stopped.clean ? '' : ', NOT cleanly'}`,
      );
    }
  } finally {
    if (trace) await stopTrace(trace);
  }
  const m = median(times) / 1000;
  console.log(
    `median ${m.toFixed(2)} s, min ${(Math.min(...times) / 1000).toFixed(2)} s, max ${(Math.max(...times) / 1000).toFixed(2)} s (target <= ${targetSeconds} s: ${m <= targetSeconds ? 'met' : 'MISSED'})`,
  );
}

main().catch((error: unknown) => {
  console.error(`attach-time: ${error instanceof Error ? error.message : error}`);
  process.exitCode = 1;
});
