// How long `podwire trace` takes to let go: from SIGINT, SIGTERM or SIGKILL to its exit, to nothing of it left in
// tracefs (uprobe events, trace instances), to its bpftrace gone, and to none of the processes it started still
// running. RUNS runs, the SIGNALS (SIGINT,SIGTERM) in turn; OLD_ROOT (another built checkout) is run in the same
// loop, interleaved, to compare.
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { median } from './median.js';
import {
  alive,
  childrenOf,
  inTracefs,
  projectRoot,
  requireTraceable,
  startTrace,
  traceArgs,
} from './podwire-trace.js';

const runs = Number(process.env.RUNS ?? 10);
const targetSeconds = 2;
const signals = (process.env.SIGNALS ?? 'SIGINT,SIGTERM').split(',') as NodeJS.Signals[];

interface Stop {
  exitMs: number;
  tracefsMs: number;
  bpftraceMs: number;
  processesMs: number;
  code: number | null;
}

/** Polls `done` every 20 ms; the ms from `since` when it held, or Infinity after 60 s. */
async function until(done: () => boolean, since: number): Promise<number> {
  while (!done()) {
    if (performance.now() - since > 60_000) return Number.POSITIVE_INFINITY;
    await sleep(20);
  }
  return performance.now() - since;
}

async function oneStop(root: string, args: string[], signal: NodeJS.Signals): Promise<Stop> {
  const trace = await startTrace(root, args);
  await sleep(1000);
  // What it started: bpftrace, its trace_pipe readers, its janitor, its stdout watcher.
  const started = childrenOf(trace.pid);
  const bpftrace = started.filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'bpftrace';
    } catch {
      return false;
    }
  });
  const exited = new Promise<number | null>((resolve) =>
    trace.child.once('exit', (code) => resolve(code)),
  );
  const since = performance.now();
  process.kill(trace.pid, signal);
  const code = await exited;
  const exitMs = performance.now() - since;
  // Polled together: each figure is from the signal.
  const [tracefsMs, bpftraceMs, processesMs] = await Promise.all([
    until(() => {
      const left = inTracefs(trace.pid);
      return left.events === 0 && left.instances === 0;
    }, since),
    until(() => alive(bpftrace).length === 0, since),
    until(() => alive(started).length === 0, since),
  ]);
  return { exitMs, tracefsMs, bpftraceMs, processesMs, code };
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function main(): Promise<void> {
  const root = projectRoot();
  requireTraceable(root);
  const roots: [string, string][] = [['new', root]];
  if (process.env.OLD_ROOT) {
    requireTraceable(process.env.OLD_ROOT);
    roots.unshift(['old', process.env.OLD_ROOT]);
  }
  const args = traceArgs(root);
  console.log(
    `stop-time: ${runs} runs of podwire trace ${args.join(' ')}${roots.length > 1 ? `, old (${process.env.OLD_ROOT}) and new interleaved` : ''}; signal to exit, to tracefs clean, to no process left`,
  );
  console.log(
    `machine: ${cpus().length} CPUs, kernel ${release()}, node ${process.version}, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const results = new Map<string, Stop[]>(roots.map(([name]) => [name, []]));
  for (let run = 1; run <= runs; run++) {
    const signal = signals[(run - 1) % signals.length] as NodeJS.Signals;
    for (const [name, dir] of roots) {
      const stop = await oneStop(dir, args, signal);
      results.get(name)?.push(stop);
      console.log(
        `run ${run} ${name} ${signal}: exit ${seconds(stop.exitMs)} (code ${stop.code}), tracefs clean ${seconds(stop.tracefsMs)}, bpftrace gone ${seconds(stop.bpftraceMs)}, no process left ${seconds(stop.processesMs)}`,
      );
    }
  }
  for (const signal of signals) {
    for (const [name, stops] of results) {
      const these = stops.filter((_, index) => signals[index % signals.length] === signal);
      const gone = these.map((s) => s.bpftraceMs);
      console.log(
        `${name} ${signal}: tracefs clean median ${seconds(median(these.map((s) => s.tracefsMs)))}, max ${seconds(Math.max(...these.map((s) => s.tracefsMs)))}; bpftrace gone median ${seconds(median(gone))}, max ${seconds(Math.max(...gone))}`,
      );
    }
  }
  for (const [name, stops] of results) {
    const exit = stops.map((s) => s.exitMs);
    console.log(
      `${name}: exit median ${seconds(median(exit))}, max ${seconds(Math.max(...exit))}; tracefs clean median ${seconds(median(stops.map((s) => s.tracefsMs)))}; no process left median ${seconds(median(stops.map((s) => s.processesMs)))}; exit codes ${[...new Set(stops.map((s) => s.code ?? 'killed'))].join(',')}`,
    );
  }
  const newExit = median((results.get('new') ?? []).map((s) => s.exitMs)) / 1000;
  console.log(
    `target: exit within ${targetSeconds} s (median), never over 5 s: ${newExit <= targetSeconds && Math.max(...(results.get('new') ?? []).map((s) => s.exitMs)) <= 5000 ? 'met' : 'MISSED'}`,
  );
}

main().catch((error: unknown) => {
  console.error(`stop-time: ${error instanceof Error ? error.message : error}`);
  process.exitCode = 1;
});
