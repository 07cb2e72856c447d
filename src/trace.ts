// `podwire trace`: runs the probes on this node and sends every handshake and teardown to the sinks.
import { existsSync, type FSWatcher, statSync, watch } from 'node:fs';
import { basename } from 'node:path';
import { choosePlugins, type PluginChoice } from './binaries/cni-config.js';
import { nodeRoot } from './binaries/discover.js';
import {
  fileIdentity,
  type PluginSurvey,
  pluginFingerprint,
  surveyPlugins,
} from './binaries/plugins.js';
import { normalOrderNote } from './correlate/normal-order.js';
import { Pipeline, type PipelineOutput, type TickMode } from './correlate/pipeline.js';
import type { HandshakeRecord } from './correlate/record.js';
import { lacks, lacksCapabilityMessage } from './doctor/container.js';
import { type StatusEvent, status } from './events.js';
import { containerd } from './probes/containerd-source.js';
import { onPollTick } from './probes/fifo-lines.js';
import { type Janitor, startJanitor } from './probes/janitor.js';
import { defaultCniBinDirs, defaultNetnsDirs, kernelProgram } from './probes/program.js';
import { ProbeRunner, removeStaleProbeDirs } from './probes/runner.js';
import type { ProbeSource, ProbeSourceEvents, RuntimeProbes } from './probes/source.js';
import { removeStaleGroups, tracefs } from './probes/uprobe-events.js';
import { RecordingWriter } from './recording/writer.js';
import type { Sink } from './sinks/ndjson.js';
import { monotonicToRealtimeOffset } from './time.js';
import { warmUp } from './warmup.js';

export interface TraceOptions {
  /** CNI plugin directories as the node's runtime names them (the kernel sees its execs by these names). */
  cniBinDirs: string[];
  /**
   * Where podwire reaches the node's files: '' on the node itself, /proc/1/root in a DaemonSet pod (hostPID),
   * whose own root is the image's. Default: found (nodeRoot()).
   */
  nodeRoot?: string;
  /** Runtime binaries to probe; empty: every containerd running on the node, found by itself. */
  runtimeBinaries: string[];
  netnsDirs: string[];
  record?: string;
  bpftrace?: string;
  /** `syscalls`: probe the plugins' I/O at the system-wide syscalls even when their own code could be probed. */
  pluginProbes?: 'auto' | 'syscalls';
  /** How often bpftrace reads its buffers (ms); 0: woken for each event. */
  bpftracePollMs?: number;
}

/** How long a podwire in a pod waits at its stop for the janitor to remove its probes (below the grace period). */
const janitorWaitMs = 12_000;

/** How often programs behind are asked how far they have been read while events wait for them. */
const tickEveryMs = 250;

export class Tracer {
  /** Every probe source by name: the kernel program, and one CRI source for each runtime binary. */
  private sources = new Map<string, ProbeSource>();
  /** The kernel program, made again when the CNI plugins change (recheckPlugins). */
  private kernel: ProbeRunner | null = null;
  /** The runtime whose binaries get CRI sources. */
  private readonly runtime: RuntimeProbes = containerd;
  /**
   * Each runtime binary's source, the file its probes are in (uprobes belong to the file, not to a process), and
   * whether a process runs from it.
   */
  private runtimes = new Map<string, { source: ProbeSource; identity: string; running: boolean }>();
  private unsupported = new Set<string>();
  private nextRuntimeIndex = 0;
  private pipeline!: Pipeline;
  private recording: RecordingWriter | null = null;
  private stopPolling: (() => void) | null = null;
  /** Removes the probes the kernel is slow to let go of, after this daemon exits however it does (janitor.ts). */
  private janitor: Janitor | null = null;
  private lastTicksAt = 0;
  private attached = new Set<string>();
  private rescanTimer: NodeJS.Timeout | null = null;
  private rescanning = false;
  private readyAnnounced = false;
  /** The sources that have attached at least once. */
  private everAttached = new WeakSet<ProbeSource>();
  private plugins: PluginSurvey | null = null;
  /** The CNI conf dirs watched (see watchConfDirs), and a recheck waiting for a burst of changes to end. */
  private confWatchers = new Map<string, { watcher: FSWatcher; identity: string }>();
  private confChanged: NodeJS.Timeout | null = null;
  private lastChoice: PluginChoice | null = null;
  readonly clockOffsetNs = monotonicToRealtimeOffset();
  /** Where podwire reaches the node's files: '' on the node, a /proc/<pid>/root in a pod. */
  private readonly nodeRoot: string;
  private refuse: (error: Error) => void = () => {};
  /**
   * Settles when tracing cannot work at all (a capability its probes need is missing): the caller stops the tracer
   * and tells the error, instead of a probe tried again without end.
   */
  readonly refused = new Promise<Error>((resolve) => {
    this.refuse = resolve;
  });

  constructor(
    private readonly options: TraceOptions,
    private readonly sinks: Sink[],
  ) {
    this.nodeRoot = options.nodeRoot ?? nodeRoot();
  }

  /** Events decoded so far and what could not be: for a live view's events/s. */
  get eventsSeen(): number {
    return this.pipeline?.counters.events ?? 0;
  }

  private emit(record: HandshakeRecord | StatusEvent): void {
    for (const sink of this.sinks) sink.write(record);
  }

  private handle(output: PipelineOutput, source: string): void {
    for (const record of output.records) this.emit(record);
    if (output.lost)
      this.emit(
        status(
          'events-lost',
          `${source}: bpftrace lost ${output.lost} events; handshakes in flight are reported incomplete`,
          { source, lost: output.lost, lostTotal: this.pipeline.counters.lostEvents },
        ),
      );
    if (output.late)
      this.emit(
        status('events-late', output.late.message, {
          source,
          late: output.late.count,
          lateTotal: this.pipeline.counters.lateEvents,
        }),
      );
    for (const problem of output.problems) this.emit(status('input-problem', problem, { source }));
  }

  private line(source: string, raw: string): void {
    this.recording?.write({ src: source, raw });
    this.handle(this.pipeline.push(source, raw), source);
  }

  /** A probe program went down, came back or is gone: recorded too, so that a replay is as blind as the live run was. */
  private probeState(name: string, state: 'up' | 'down' | 'gone', ticks: TickMode = false): void {
    this.recording?.write(ticks ? { src: name, probe: state, ticks } : { src: name, probe: state });
    this.handle(this.pipeline.probeState(name, state, ticks), name);
  }

  /** What the source named `name` tells goes to the pipeline and the statuses under that name. */
  private eventsOf(name: string): ProbeSourceEvents {
    return {
      line: (raw) => this.line(name, raw),
      attached: (probes) => this.attachedOne(name, probes),
      died: (message) => this.probeDied(name, message),
    };
  }

  /** A source that ticks is waited for from now on (its TickMode); the last one to attach makes podwire ready. */
  private attachedOne(name: string, probes: number): void {
    const source = this.sources.get(name);
    if (!source) return;
    this.attached.add(name);
    this.probeState(name, 'up', source.tickMode);
    const again = this.everAttached.has(source);
    this.everAttached.add(source);
    if (this.readyAnnounced) {
      // After the start: a source back after it died, or a runtime found later (a new or replaced binary).
      this.emit(
        status('probe-restarted', `${name}: ${probes} probes attached${again ? ' again' : ''}`, {
          source: name,
          probes,
          restarts: source.restarts,
        }),
      );
    } else if (this.attached.size === this.sources.size) {
      this.readyAnnounced = true;
      // Said once here, so that no handshake repeats how its runtime always works (docs/records.md#deviations).
      const notes: { text: string; fields: Record<string, unknown> }[] = [
        ...[...this.sources.values()].flatMap((each) => each.readyNote?.() ?? []),
        normalOrderNote(this.runtime.name),
      ];
      this.emit(
        status(
          'ready',
          `${this.attached.size} probe programs attached${notes.map((note) => `; ${note.text}`).join('')}`,
          {
            programs: [...this.attached],
            ...Object.assign({}, ...notes.map((note) => note.fields)),
          },
        ),
      );
    }
  }

  private probeDied(name: string, message: string): void {
    const source = this.sources.get(name);
    if (!source) return;
    // A program that never attached, without SYS_ADMIN: bpftrace's own words (often about BTF) would mislead, and
    // no retry can help.
    if (!this.everAttached.has(source) && lacks('SYS_ADMIN')) {
      this.refuse(
        new Error(
          lacksCapabilityMessage(
            `the ${name} probes cannot be loaded into the kernel`,
            'SYS_ADMIN',
          ),
        ),
      );
      return;
    }
    this.attached.delete(name);
    this.probeState(name, 'down');
    this.emit(
      status('probe-failed', `${name}: ${message}`, { source: name, restarts: source.restarts }),
    );
  }

  /** The CNI plugin directories as podwire opens them (under the node's root when podwire has another). */
  private pluginDirs(): string[] {
    return this.options.cniBinDirs.map((dir) => `${this.nodeRoot}${dir}`);
  }

  /** Which plugins the node's runtimes can run, from their CNI configs (cni-config.ts); every plugin when unsure. */
  private choosePlugins(): PluginChoice {
    let choice = choosePlugins(this.options.runtimeBinaries);
    // A containerd stopped or restarting runs no plugin meanwhile, and the same configs once back: the last choice
    // stands, rather than two reloads of the kernel program (seconds blind each) for one restart.
    if ('all' in choice && choice.noRuntime && this.lastChoice) choice = this.lastChoice;
    this.lastChoice = choice;
    this.watchConfDirs(choice.confDirs);
    return choice;
  }

  /** Looks at the CNI plugins and says where their I/O will be probed, and why not in their own code if not. */
  private surveyPlugins(): string {
    const plugins = surveyPlugins(
      this.pluginDirs(),
      this.options.pluginProbes === 'syscalls',
      this.choosePlugins(),
    );
    this.plugins = plugins;
    // Plugins outside these (not named by the configs, or installed since) run unprobed: their records must not be
    // ok. Recorded, for a replay to judge the same. At the syscalls every plugin's I/O is seen.
    const probedPlugins =
      plugins.mode === 'uprobes'
        ? [...new Set(plugins.plugins.map((p) => basename(p.path)))]
        : null;
    this.pipeline.setProbedPlugins(probedPlugins);
    this.recording?.write({ probedPlugins });
    const probed = plugins.plugins.filter((p) =>
      Object.values(p.offsets).some((o) => o.length > 0),
    );
    const which = plugins.types
      ? { types: plugins.types }
      : plugins.allBecause
        ? { allBecause: plugins.allBecause }
        : {};
    if (plugins.plugins.length === 0) {
      this.emit(
        status(
          'plugin-probes',
          `no CNI plugins in ${this.options.cniBinDirs.join(', ') || '(no CNI bin dir)'}: plugin execs, netlink and stdout are not seen until one is installed there (or pass --cni-bin-dir DIR)`,
          { mode: plugins.mode, plugins: [], ...which },
        ),
      );
    } else if (plugins.mode === 'syscalls') {
      this.emit(
        status(
          'plugin-probes',
          `CNI plugins' netlink and stdout are probed at the system-wide syscalls, which costs every process on the node a little: ${plugins.reasons.slice(0, 3).join('; ')}${plugins.reasons.length > 3 ? `; and ${plugins.reasons.length - 3} more` : ''}`,
          { mode: plugins.mode, reasons: plugins.reasons, ...which },
        ),
      );
    } else {
      const chosen = plugins.types
        ? `the ${probed.length} plugins the node's CNI configs can run (${plugins.types.join(', ')})`
        : `all ${probed.length} plugins in the CNI bin dirs, since ${plugins.allBecause ?? 'no runtime config was read'}`;
      this.emit(
        status(
          'plugin-probes',
          `CNI plugins' netlink and stdout are probed in their own code: ${chosen}`,
          { mode: plugins.mode, plugins: probed.map((p) => p.path), ...which },
        ),
      );
    }
    return kernelProgram({
      cniBinDirs: this.options.cniBinDirs,
      netnsDirs: this.options.netnsDirs,
      plugins,
    });
  }

  /**
   * Watches the CNI conf dirs: a network added just before a pod is probed when the pod's plugins run, instead of
   * up to 10 s later. A dir not there yet is caught by the 10 s recheck.
   */
  private watchConfDirs(dirs: string[]): void {
    // A dir removed and made again (a reinstall) is another inode, which the old watch does not see.
    for (const [dir, { watcher, identity }] of this.confWatchers) {
      if (dirs.includes(dir) && inodeOf(dir) === identity) continue;
      watcher.close();
      this.confWatchers.delete(dir);
    }
    for (const dir of dirs) {
      if (this.confWatchers.has(dir)) continue;
      const identity = inodeOf(dir);
      try {
        const watcher = watch(dir, () => {
          // One save is several events (create, write, rename): one recheck once they stop.
          if (this.confChanged) clearTimeout(this.confChanged);
          this.confChanged = setTimeout(() => {
            this.confChanged = null;
            this.recheckPlugins();
          }, 50);
        });
        watcher.on('error', () => {
          watcher.close();
          this.confWatchers.delete(dir);
        });
        this.confWatchers.set(dir, { watcher, identity });
      } catch {
        // Not there (yet): the recheck every 10 s reads it.
      }
    }
  }

  /**
   * A plugin installed, replaced or removed, or a network config naming other plugins: uprobes belong to the old
   * files, and the plugins to probe are others, so the program is made again.
   */
  private recheckPlugins(): void {
    if (!this.plugins || !this.kernel) return;
    if (pluginFingerprint(this.pluginDirs(), this.choosePlugins()) === this.plugins.fingerprint)
      return;
    const kernel = this.kernel;
    this.emit(
      status(
        'plugins-changed',
        'CNI plugins, or the plugins the CNI configs name, changed: attaching the kernel probes again',
        { source: 'kernel' },
      ),
    );
    this.attached.delete(kernel.name);
    this.probeState(kernel.name, 'down');
    kernel.reload(this.surveyPlugins());
  }

  /** The source for one runtime binary, not started, or null when it cannot be probed (the runtime says why). */
  private async runtimeSource(binary: string): Promise<ProbeSource | null> {
    const name = `cri:${binary}`;
    const source = await this.runtime.source(
      binary,
      name,
      this.nextRuntimeIndex,
      this.eventsOf(name),
      (said) => this.emit(said),
    );
    if (source) this.nextRuntimeIndex++;
    return source;
  }

  /** Starts a runtime binary's source; false, said in a status, when its probes cannot be placed. */
  private startRuntime(binary: string, source: ProbeSource): boolean {
    const failed = source.start();
    if (failed) {
      this.emit(status('probe-failed', `${source.name}: ${failed}`, { source: source.name }));
      return false;
    }
    this.sources.set(source.name, source);
    this.runtimes.set(binary, { source, identity: fileIdentity(binary), running: true });
    return true;
  }

  /** Runtimes come and go on a node (upgrades, restarts): probe new binaries, let go of those no longer running. */
  private async rescan(): Promise<void> {
    if (this.rescanning) return;
    this.rescanning = true;
    try {
      const running = new Set(this.runtime.running());
      for (const binary of running) {
        if (this.runtimes.has(binary) || this.unsupported.has(binary)) continue;
        const source = await this.runtimeSource(binary);
        if (!source || !this.startRuntime(binary, source)) {
          this.unsupported.add(binary);
          continue;
        }
        // Before its attached() comes (never from inside start(), source.ts): a replay learns of the CRI calls
        // being probed before their source is up, as the live run did.
        this.pipeline.setCriProbes(true);
        this.recording?.write({ cri: true });
      }
      for (const [binary, runtime] of [...this.runtimes]) {
        const replaced = fileIdentity(binary) !== runtime.identity;
        if (!replaced) {
          // A restart of the same binary (stop, start, crash) keeps the probes: they are in the file, and
          // removing them in between would lose the calls of the first pods after the start.
          if (running.has(binary) !== runtime.running) {
            runtime.running = running.has(binary);
            this.emit(
              runtime.running
                ? status('runtime-found', `${this.runtime.name} runs again from ${binary}`, {
                    binary,
                  })
                : status(
                    'runtime-gone',
                    `no ${this.runtime.name} runs from ${binary} now; its CRI probes stay, for when it starts again`,
                    { binary },
                  ),
            );
          }
          continue;
        }
        // Removed or replaced on disk (an upgrade): the probes belong to the old file.
        const name = runtime.source.name;
        this.runtimes.delete(binary);
        this.sources.delete(name);
        await runtime.source.stop(this.janitor);
        this.attached.delete(name);
        this.probeState(name, 'gone');
        this.emit(
          status(
            'runtime-gone',
            `${binary} was removed or replaced on disk: its CRI probes are removed${running.has(binary) ? ', and the new file is probed' : ''}`,
            { binary },
          ),
        );
        if (!running.has(binary)) continue;
        const fresh = await this.runtimeSource(binary);
        if (!fresh || !this.startRuntime(binary, fresh)) this.unsupported.add(binary);
      }
    } finally {
      this.rescanning = false;
    }
  }

  /** Inspects the runtimes, then starts every source; the `ready` status says when all are attached. */
  async start(): Promise<void> {
    removeStaleProbeDirs();
    const stale = await removeStaleGroups();
    for (const group of stale.removed) {
      this.emit(
        status('input-problem', `removed uprobe events left by a podwire that died (${group})`),
      );
    }
    for (const problem of stale.problems) this.emit(status('input-problem', problem));
    // Before any probe is placed: from here on, nothing this daemon places outlives it, even after a kill -9.
    const janitor = startJanitor(tracefs);
    if (typeof janitor === 'string') this.emit(status('input-problem', janitor));
    else this.janitor = janitor;
    const binaries =
      this.options.runtimeBinaries.length > 0
        ? this.options.runtimeBinaries
        : this.runtime.running();
    const found: { binary: string; source: ProbeSource }[] = [];
    for (const binary of binaries) {
      const source = await this.runtimeSource(binary);
      if (source) found.push({ binary, source });
    }
    if (binaries.length === 0) {
      this.emit(
        status(
          'runtime-unsupported',
          `no ${this.runtime.name} runs on this node: handshakes are built from kernel events alone (pass --runtime-binary to name one)`,
        ),
      );
    }
    // Nothing is awaited from here to the end: sources tell what they read from the event loop, never from inside
    // start() (source.ts), and by then the pipeline and the recording are there to take it. Whether CRI calls are
    // probed is known once the runtimes' sources have started.
    for (const { binary, source } of found) this.startRuntime(binary, source);
    const criProbes = this.runtimes.size > 0;
    this.pipeline = new Pipeline({
      clockOffsetNs: this.clockOffsetNs,
      criProbes,
      runtime: this.runtime.name,
    });
    if (this.options.record) {
      this.recording = new RecordingWriter(
        this.options.record,
        {
          clockOffsetNs: this.clockOffsetNs.toString(),
          criProbes,
          runtime: this.runtime.name,
          cniBinDirs: this.options.cniBinDirs,
        },
        (message) => {
          this.recording = null;
          this.emit(status('input-problem', message));
        },
      );
    }
    // Until a program says it is attached, the pipeline knows it is blind to that part of the node.
    for (const name of ['kernel', ...this.sources.keys()]) this.probeState(name, 'down');
    const kernel = new ProbeRunner('kernel', this.surveyPlugins(), this.eventsOf('kernel'), {
      ...(this.options.bpftrace ? { bpftrace: this.options.bpftrace } : {}),
      ...(this.options.bpftracePollMs !== undefined ? { pollMs: this.options.bpftracePollMs } : {}),
    });
    this.kernel = kernel;
    this.sources.set(kernel.name, kernel);
    kernel.start();
    // While bpftrace compiles and attaches (seconds), the decoders get warm on a real recording (see warmup.ts).
    void warmUp();
    this.rescanTimer = setInterval(() => {
      this.recheckPlugins();
      if (this.options.runtimeBinaries.length === 0) void this.rescan();
    }, 10_000);
    // Probe output is read on one timer (fifo-lines.ts); after each of its wake-ups, held events are looked at.
    this.stopPolling = onPollTick((linesSeen) => {
      if (!this.pipeline.holding) return;
      // Held events go on once every source has been read past them: each is asked how far it is. Each tick
      // wakes a source and the daemon, a cost to the pods starting: only the sources behind are asked, and at
      // most every tickEveryMs (a record comes at most about that much later).
      if (Date.now() - this.lastTicksAt >= tickEveryMs) {
        this.lastTicksAt = Date.now();
        this.requestTicks(this.pipeline.sourcesBehind());
      }
      // Sources that never answer a tick (a kernel without trace_marker) are released once input is idle:
      // a wake-up that found no lines (at least busyPollMs after the last).
      if (linesSeen) return;
      // Recorded where it happened, so that a replay releases the same events at the same point.
      this.recording?.write({ drain: true });
      this.handle(this.pipeline.drain(), 'pipeline');
    });
  }

  /** A tick line from each named source (all by default) once it has read what came before now. */
  private requestTicks(names?: string[]): void {
    for (const source of this.sources.values())
      if (!names || names.includes(source.name)) source.tick();
  }

  /** Ends what runs and closes the sinks; also after a start that failed part way (no pipeline yet then). */
  async stop(): Promise<void> {
    this.stopPolling?.();
    if (this.rescanTimer) clearInterval(this.rescanTimer);
    if (this.confChanged) clearTimeout(this.confChanged);
    for (const { watcher } of this.confWatchers.values()) watcher.close();
    this.confWatchers.clear();
    const pipeline = this.pipeline as Pipeline | undefined;
    if (pipeline) {
      // One last round of ticks, so that what came before the stop is confirmed and judged whole (at most 1 s).
      const asked = process.hrtime.bigint();
      this.requestTicks();
      for (let waited = 0; waited < 1000; waited += 20) {
        const readUpTo = pipeline.readUpToNs;
        if (readUpTo === null || readUpTo >= asked) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    // Reading ends now; the kernel's seconds of letting go of the probes are the janitor's and bpftrace's own.
    await Promise.all([...this.sources.values()].map((source) => source.stop(this.janitor)));
    // On the node the janitor outlives podwire and finishes after it. In a pod the runtime kills what the container
    // leaves when podwire exits, so podwire waits for it (within the pod's grace period, while the sinks flush).
    const janitorDone = this.nodeRoot === '' ? null : this.janitor?.finish(janitorWaitMs);
    if (pipeline) {
      this.handle(pipeline.finish(), 'pipeline');
      this.emit(status('stopped', 'podwire stopped', { counters: pipeline.counters }));
    }
    await this.recording?.end();
    for (const sink of this.sinks) await sink.close();
    if (janitorDone && !(await janitorDone))
      process.stderr.write(
        `podwire: the janitor did not finish within ${janitorWaitMs / 1000} s: the next podwire removes what it left in ${tracefs}\n`,
      );
  }
}

/** A directory's device and inode ('' when it is not there): its mtime changes with every file, these do not. */
function inodeOf(dir: string): string {
  try {
    const stat = statSync(dir);
    return `${stat.dev}:${stat.ino}`;
  } catch {
    return '';
  }
}

export const traceDefaults = { cniBinDirs: defaultCniBinDirs, netnsDirs: defaultNetnsDirs };

/** The default CNI plugin directories the node has, by the names its runtime uses. */
export function existingCniBinDirs(root = nodeRoot()): string[] {
  return defaultCniBinDirs.filter((dir) => existsSync(`${root}${dir}`));
}
