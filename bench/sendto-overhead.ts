// What `podwire trace` costs a process it does not trace, making a syscall its probes see: loopback UDP sendto.
// The tracer running vs not, interleaved without/with pairs; median ns per call each, and the median ratio.
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, release } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { compiledC } from './c-program.js';
import { median } from './median.js';
import {
  projectRoot,
  type RunningTrace,
  requireTraceable,
  startTrace,
  stopTrace,
  traceArgs,
} from './podwire-trace.js';

const pairs = Number(process.env.PAIRS ?? 12);
const calls = Number(process.env.CALLS ?? 300_000);
/** Before each measurement: the tracer's start (bpftrace compiling) or stop must not be in it. */
const settleMs = Number(process.env.SETTLE_MS ?? 1000);
const targetRatio = 1.1;

function measure(binary: string): number {
  const out = execFileSync(binary, [String(calls)], { encoding: 'utf8' });
  const ns = Number(out.trim());
  if (!Number.isFinite(ns)) throw new Error(`sendto-loop printed "${out.trim()}", not ns per call`);
  return ns;
}

async function main(): Promise<void> {
  const root = projectRoot();
  requireTraceable(root);
  const binary = compiledC(root, 'sendto-loop');
  const args = traceArgs(root);
  console.log(
    `sendto-overhead: ${pairs} pairs (without, then with podwire trace ${args.join(' ')}), ${calls} loopback UDP sendto calls per measurement`,
  );
  console.log(
    `machine: ${cpus().length} CPUs, kernel ${release()}, node ${process.version}, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  measure(binary); // warm-up: page cache, socket buffers
  console.log('pair  without_ns  with_ns  ratio  ready_s  load');
  const without: number[] = [];
  const withTracer: number[] = [];
  const ratios: number[] = [];
  let trace: RunningTrace | null = null;
  try {
    for (let pair = 1; pair <= pairs; pair++) {
      await sleep(settleMs);
      const off = measure(binary);
      trace = await startTrace(root, args);
      const readyS = trace.readyMs / 1000;
      await sleep(settleMs);
      const on = measure(binary);
      const stopped = await stopTrace(trace);
      trace = null;
      if (!stopped.clean)
        console.error(`pair ${pair}: podwire trace did not exit cleanly on SIGINT`);
      without.push(off);
      withTracer.push(on);
      ratios.push(on / off);
      console.log(
        [
          String(pair).padEnd(5),
          off.toFixed(1).padEnd(11),
          on.toFixed(1).padEnd(8),
          (on / off).toFixed(3).padEnd(6),
          readyS.toFixed(2).padEnd(8),
          loadavg()[0]?.toFixed(2),
        ].join(' '),
      );
    }
  } finally {
    if (trace) await stopTrace(trace);
  }
  const ratio = median(ratios);
  console.log(
    `median: without ${median(without).toFixed(1)} ns/call, with ${median(withTracer).toFixed(1)} ns/call; median ratio ${ratio.toFixed(3)} (target <= ${targetRatio}: ${ratio <= targetRatio ? 'met' : 'MISSED'})`,
  );
}

main().catch((error: unknown) => {
  console.error(`sendto-overhead: ${error instanceof Error ? error.message : error}`);
  process.exitCode = 1;
});
