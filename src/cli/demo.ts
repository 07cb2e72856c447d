// `podwire demo`, the README's first command: the lab traced in the live timeline while pods come and go, until `q`.
// The pods come and go as on a busy node, now and then one whose network cannot be set up.
import { hostname } from 'node:os';
import type { Command } from 'commander';
import type { HandshakeRecord } from '../correlate/record.js';
import type { StatusEvent } from '../events.js';
import { labDown, labUp } from '../lab/lab.js';
import { type LabPaths, labPaths } from '../lab/paths.js';
import { createPods, deletePods } from '../lab/pods.js';
import { NdjsonSink, type Sink } from '../sinks/ndjson.js';
import { existingCniBinDirs, Tracer, traceDefaults } from '../trace.js';
import { positiveInteger, progress, requireRoot } from './output.js';

/**
 * The demo's own network when it brings the lab up: 13 addresses (a /28 less the bridge's), so that a burst
 * now and then asks for one more than the range holds and that pod fails in IPAM, as on a node whose pod CIDR
 * is full.
 */
const demoSubnet = '10.244.77.0/28';
const demoAddresses = 13;
/** Pods kept alive at most; the oldest go first, as a rollout would replace them. */
const keepAlive = 9;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Notes the tracer's ready line on its way to the real sink. */
class ReadyWatch implements Sink {
  ready = false;
  readonly records: HandshakeRecord[] = [];
  constructor(private readonly next: Sink) {}
  write(record: HandshakeRecord | StatusEvent): void {
    if (record.kind === 'status' && record.state === 'ready') this.ready = true;
    if (record.kind !== 'status') this.records.push(record);
    this.next.write(record);
  }
  close(): Promise<void> {
    return this.next.close();
  }
  async until(what: string, done: () => boolean, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(100);
    }
  }
}

/** Pods created and deleted over CRI like a kubelet on a busy node: one every second or two, bursts, failures. */
class BusyNode {
  private live: string[] = [];
  private stopped = false;
  private wake: (() => void) | null = null;
  /** A pod that failed, and how it failed: said by the caller when the demo ends. */
  failures = 0;

  constructor(
    private readonly paths: LabPaths,
    /** Addresses in the pod range when known: a burst then asks for one more than is left. */
    private readonly addresses: number | null,
  ) {}

  private async create(count: number, parallel: number, prefix: string): Promise<void> {
    const pods = await createPods(
      this.paths,
      { count, parallel, namespace: 'demo', prefix, withContainer: false },
      () => undefined,
    );
    for (const pod of pods) {
      if (pod.sandboxId && !pod.error) this.live.push(pod.sandboxId);
      else this.failures++;
    }
  }

  private async deleteOldest(count: number): Promise<void> {
    const oldest = this.live.splice(0, count);
    if (oldest.length > 0) await deletePods(this.paths, oldest, () => undefined).catch(() => []);
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  async run(): Promise<void> {
    const started = Date.now();
    let nextFull = 20_000;
    for (let tick = 1; !this.stopped; tick++) {
      try {
        if (this.addresses !== null && Date.now() - started >= nextFull) {
          // One more pod than there are addresses left: the last one fails in host-local.
          await this.create(this.addresses - this.live.length + 1, 3, 'batch');
          await this.deleteOldest(6);
          nextFull += 45_000;
        } else if (tick % 6 === 0) {
          await this.create(4, 4, 'burst');
        } else {
          await this.create(1, 1, 'web');
        }
        if (this.live.length > keepAlive) await this.deleteOldest(this.live.length - keepAlive + 2);
      } catch {
        // A CRI call that failed is what the timeline shows; the demo goes on.
      }
      await this.pause(1000 + Math.random() * 1000);
    }
  }

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  async deleteAll(): Promise<void> {
    await this.deleteOldest(this.live.length);
  }
}

function startTracer(sink: Sink): Tracer {
  return new Tracer(
    { cniBinDirs: existingCniBinDirs(), netnsDirs: traceDefaults.netnsDirs, runtimeBinaries: [] },
    [sink],
  );
}

/** On a terminal: the timeline, pods until `q`. */
async function interactiveDemo(paths: LabPaths, addresses: number | null): Promise<void> {
  const { startTui } = await import('../tui/index.js');
  const tui = startTui({
    header: {
      node: hostname(),
      source:
        addresses === null
          ? 'demo on the lab (it was already up: no IPAM failures staged)'
          : 'demo on the lab: a busy node',
    },
  });
  const watch = new ReadyWatch(tui.sink);
  const tracer = startTracer(watch);
  const busy = new BusyNode(paths, addresses);
  let lastEvents = 0;
  const rate = setInterval(() => {
    const events = tracer.eventsSeen;
    tui.setHeader({ eventsPerSecond: events - lastEvents });
    lastEvents = events;
  }, 1000);
  let driving: Promise<void> = Promise.resolve();
  try {
    await tracer.start();
    await Promise.race([watch.until('podwire to attach its probes', () => watch.ready), tui.quit]);
    if (watch.ready) driving = busy.run();
    await tui.quit;
  } finally {
    clearInterval(rate);
    busy.stop();
    tui.destroy();
    progress('podwire demo: deleting the demo pods, detaching the probes (about 10 s)');
    await driving;
    await busy.deleteAll();
    await tracer.stop();
  }
}

/** Not on a terminal: NDJSON for a fixed number of pods, created and deleted, then exit. */
async function scriptedDemo(paths: LabPaths, count: number): Promise<void> {
  const watch = new ReadyWatch(new NdjsonSink(process.stdout));
  const tracer = startTracer(watch);
  try {
    await tracer.start();
    await watch.until('podwire to attach its probes', () => watch.ready);
    const pods = await createPods(
      paths,
      { count, parallel: 2, namespace: 'demo', prefix: 'web', withContainer: false },
      () => undefined,
    );
    const ids = pods.flatMap((pod) => (pod.sandboxId ? [pod.sandboxId] : []));
    await watch.until('the handshake records', () =>
      ids.every((id) => watch.records.some((r) => r.sandboxId === id)),
    );
    await deletePods(paths, ids, () => undefined);
    await watch.until('the teardown records', () =>
      ids.every((id) => watch.records.some((r) => r.kind === 'teardown' && r.sandboxId === id)),
    );
  } finally {
    await tracer.stop();
  }
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'bring the lab up and trace it in the live timeline while pods come and go like on a busy node, one failing now and then; q stops and brings the lab down. Not on a terminal: NDJSON for --count pods',
    )
    .option(
      '--count <n>',
      'pods to create when not on a terminal (or with --json)',
      positiveInteger('--count'),
      4,
    )
    .option('--json', 'NDJSON for --count pods, even on a terminal')
    .action(async (options: { count: number; json?: boolean }) => {
      requireRoot('podwire demo');
      const interactive =
        process.stdout.isTTY === true && process.stdin.isTTY === true && !options.json;
      const paths = labPaths();
      const started =
        (await labUp(paths, interactive ? { subnet: demoSubnet } : {}, progress)) === 'started';
      try {
        if (interactive) await interactiveDemo(paths, started ? demoAddresses : null);
        else await scriptedDemo(paths, options.count);
      } finally {
        if (started) await labDown(paths, progress);
      }
    });
}
