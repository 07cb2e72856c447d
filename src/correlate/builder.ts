// Builds one record from a finished sandbox or teardown: phases nested as they ran, the fields users filter on,
// the outcome with its cause, and the deviations from the runtime's and plugin's normal order (normal-order.ts).
import { type CniOutput, cniErrorMessage, cniOutput } from '../decode/cni.js';
import { earliest, latest, millis, rfc3339Nanos } from '../time.js';
import { netlinkAttributes, netlinkPhaseName } from './netlink-phase.js';
import { deviations } from './normal-order.js';
import type { HandshakeRecord, PhaseKind, PhaseRecord } from './record.js';
import {
  ADD,
  type CorrelatorOptions,
  type CriCall,
  DEL,
  type NetlinkRequest,
  type PluginRun,
  pluginEnvironment,
  pluginFailed,
  pluginSignal,
  type Sandbox,
  type Teardown,
} from './state.js';

export class HandshakeBuilder {
  private phases: PhaseRecord[] = [];
  private errors: { phase: string; message: string; depth: number }[] = [];
  /** Plugins run whose netlink and stdout were not probed: their steps are unknown, not absent. */
  private unprobed: string[] = [];
  private failedPlugins = new Set<PluginRun>();

  constructor(
    private readonly options: Required<CorrelatorOptions>,
    private readonly kind: 'handshake' | 'teardown',
  ) {}

  private time(ns: bigint): string {
    return rfc3339Nanos(ns + this.options.clockOffsetNs);
  }

  private add(
    name: string,
    kind: PhaseKind,
    startNs: bigint,
    endNs: bigint | null,
    parentId: number | null,
    attributes: Record<string, string | number | boolean> = {},
  ): PhaseRecord {
    const phase: PhaseRecord = {
      id: this.phases.length,
      parentId,
      name,
      kind,
      start: this.time(startNs),
      end: endNs === null ? null : this.time(endNs),
      durationMs: endNs === null ? null : millis(startNs, endNs),
      attributes,
    };
    this.phases.push(phase);
    return phase;
  }

  private fail(phase: PhaseRecord, message: string, depth: number): void {
    phase.error = message;
    this.errors.push({ phase: phase.name, message, depth });
  }

  private pluginPhases(
    plugin: PluginRun,
    command: string,
    parentId: number | null,
    depth: number,
    facts: Facts,
  ): void {
    const env = pluginEnvironment(plugin);
    // A plugin exec'd by a plugin is the delegated IPAM; the runtime runs the others.
    const kind = plugin.parent ? 'ipam' : 'cni';
    const name = kind === 'ipam' ? `ipam ${plugin.name}` : `cni ${command} ${plugin.name}`;
    facts.cni.push(plugin.name);
    if (env.traceparent) facts.traceparent ??= env.traceparent;
    const attributes: Record<string, string | number | boolean> = {
      'process.pid': plugin.pid,
      'process.executable.name': plugin.name,
      'process.executable.path': plugin.path,
      'podwire.cni.command': env.command ?? command,
    };
    if (env.ifname) attributes['network.interface.name'] = env.ifname;
    if (env.netns) attributes['podwire.netns'] = env.netns;
    if (env.containerId) attributes['container.id'] = env.containerId;
    if (plugin.exitCode !== null) attributes['podwire.cni.exit_code'] = plugin.exitCode;
    const output = cniOutput(Buffer.concat(plugin.stdout).toString('utf8'));
    if (output.type === 'error') attributes['podwire.cni.error'] = cniErrorMessage(output.error);
    if (output.type === 'result') attributes['podwire.cni.result'] = JSON.stringify(output.result);
    const phase = this.add(name, kind, plugin.startNs, plugin.endNs, parentId, attributes);
    if (!plugin.probed)
      this.unprobed.push(
        `${name}: its netlink and stdout were not probed (not among the plugins the CNI configs named when the probes were made)`,
      );
    if (output.type === 'result') facts.results.push({ plugin, output });
    if (pluginFailed(plugin) || output.type === 'error') {
      const message =
        output.type === 'error'
          ? cniErrorMessage(output.error)
          : pluginSignal(plugin) !== 0
            ? `killed by signal ${pluginSignal(plugin)}`
            : `exited with code ${plugin.exitCode}`;
      this.fail(phase, message, depth);
      this.failedPlugins.add(plugin);
    }
    for (const request of plugin.requests)
      this.requestPhase(request, plugin, phase.id, depth + 1, facts);
    for (const child of plugin.children)
      this.pluginPhases(child, command, phase.id, depth + 1, facts);
  }

  private requestPhase(
    request: NetlinkRequest,
    plugin: PluginRun,
    parentId: number,
    depth: number,
    facts: Facts,
  ): void {
    const message = request.request;
    if (!message) return;
    const name = netlinkPhaseName(message);
    const attributes = netlinkAttributes(message);
    attributes['process.pid'] = plugin.pid;
    attributes['podwire.netns_inum'] = request.netnsInum;
    if (request.errno !== null) attributes['podwire.netlink.errno'] = request.errno;
    const errorReply = request.reply.find((reply) => reply.error)?.error;
    if (errorReply?.errnoName) attributes['podwire.netlink.errno_name'] = errorReply.errnoName;
    if (request.extack) attributes['podwire.netlink.extack'] = request.extack;
    const phase = this.add(name, 'rtnetlink', request.sendNs, request.endNs, parentId, attributes);
    // A plugin tolerates some errors (EEXIST on its bridge); only the last request of a plugin that failed
    // without a failing IPAM child is taken as the cause.
    const failedChild = plugin.children.some(pluginFailed);
    const causal =
      request.errno !== null &&
      request.errno !== 0 &&
      pluginFailed(plugin) &&
      !failedChild &&
      plugin.requests.at(-1) === request;
    if (causal) {
      this.fail(
        phase,
        `${errorReply?.errnoName ?? `errno ${request.errno}`}${request.extack ? `: ${request.extack}` : ''}`,
        depth,
      );
    }
    const link = message.link;
    if (name === 'veth create' && link) {
      facts.podInterface ??= link.ifname ?? null;
      facts.hostVeth ??= link.peer?.ifname ?? null;
    }
    if (link?.kind === 'bridge' && link.ifname) facts.bridge ??= link.ifname;
    // Only the address added inside the pod's namespace is the pod's; the host side's is the bridge gateway.
    if (
      name === 'addr add' &&
      message.addr &&
      facts.podNetnsInum !== null &&
      request.netnsInum === facts.podNetnsInum
    ) {
      const address = message.addr.local ?? message.addr.address;
      if (address) facts.podIP ??= `${address}/${message.addr.prefixlen}`;
    }
  }

  build(sandbox: Sandbox, why: string): HandshakeRecord {
    const facts = newFacts(sandbox.netns?.inum ?? null);
    const run = sandbox.run;
    const startNs = run?.enterNs ?? sandbox.firstNs;
    const endNs = run?.returnNs ?? sandbox.startEndNs ?? sandbox.lastNs;
    let rootId: number | null = null;
    if (run) {
      const root = this.add('cri RunPodSandbox', 'cri', run.enterNs, run.returnNs, null, {
        'process.pid': run.pid,
        'podwire.go.goroutine': run.goroutine,
      });
      rootId = root.id;
      if (run.failed) this.fail(root, 'RunPodSandbox returned an error', 0);
    }
    if (sandbox.netns) {
      this.add('netns create', 'netns', sandbox.netns.createNs, sandbox.netns.pinnedNs, rootId, {
        'podwire.netns': sandbox.netns.path,
        ...(sandbox.netns.inum !== null ? { 'podwire.netns_inum': sandbox.netns.inum } : {}),
        'process.pid': sandbox.netns.pid,
      });
    }
    const ordered = [...sandbox.plugins].sort((a, b) => (a.startNs < b.startNs ? -1 : 1));
    for (const plugin of ordered) this.pluginPhases(plugin, ADD, rootId, 1, facts);
    const cleanupFacts = newFacts(null);
    for (const plugin of sandbox.cleanup) this.pluginPhases(plugin, DEL, rootId, 1, cleanupFacts);
    if (sandbox.startBeginNs !== null || sandbox.startEndNs !== null) {
      this.add(
        'sandbox start',
        'sandbox',
        sandbox.startBeginNs ?? sandbox.startEndNs ?? startNs,
        sandbox.startEndNs,
        rootId,
        sandbox.startAttributes,
      );
    }
    const primary = ordered.find((plugin) => plugin.name !== 'loopback') ?? null;
    // The plugin's own word on the address, when the kernel side was not seen.
    const resultAddress = facts.results
      .filter((r) => r.plugin === primary)
      .flatMap((r) =>
        r.output.type === 'result' ? r.output.result.ips.map((ip) => ip.address) : [],
      )[0];
    const missing = this.missing(sandbox.lost, [
      why === 'timeout' ? 'nothing ended it within 60 s' : null,
      why === 'flush' && !run?.returnNs
        ? `tracing stopped before ${run ? 'RunPodSandbox returned' : 'the sandbox was seen to start'}`
        : null,
    ]);
    return {
      kind: 'handshake',
      sandboxId: sandbox.id,
      runtime: this.options.runtime,
      pod: { ...sandbox.pod },
      netns: sandbox.netns?.path ?? pluginEnvironment(primary).netns ?? null,
      podIP: facts.podIP ?? resultAddress ?? null,
      hostVeth: facts.hostVeth,
      podInterface: facts.podInterface ?? pluginEnvironment(primary).ifname ?? null,
      bridge: facts.bridge,
      cni: facts.cni,
      outcome: this.outcome(missing),
      error: this.primaryError(),
      missing,
      start: this.time(startNs),
      end: this.time(endNs),
      durationMs: millis(startNs, endNs),
      phases: this.phases,
      deviations: this.deviations(sandbox, ordered),
      traceparent: facts.traceparent,
    };
  }

  buildTeardown(teardown: Teardown): HandshakeRecord {
    const facts = newFacts(null);
    const calls = [teardown.stop, teardown.remove].filter((c): c is CriCall => c !== null);
    let parentId: number | null = null;
    let removeId: number | null = null;
    for (const call of calls) {
      const phase = this.add(`cri ${call.method}`, 'cri', call.enterNs, call.returnNs, null, {
        'process.pid': call.pid,
      });
      if (call.failed) this.fail(phase, `${call.method} returned an error`, 0);
      if (call.method === 'StopPodSandbox') parentId = phase.id;
      if (call.method === 'RemovePodSandbox') removeId = phase.id;
    }
    const ordered = [...teardown.plugins].sort((a, b) => (a.startNs < b.startNs ? -1 : 1));
    for (const plugin of ordered) {
      const inside =
        teardown.stop &&
        plugin.startNs >= teardown.stop.enterNs &&
        (teardown.stop.returnNs === null || plugin.startNs <= teardown.stop.returnNs);
      this.pluginPhases(plugin, DEL, inside ? parentId : (removeId ?? parentId), 1, facts);
    }
    if (teardown.netnsDeleteNs !== null) {
      this.add('netns delete', 'netns', teardown.netnsDeleteNs, teardown.netnsDeleteNs, parentId, {
        'podwire.netns': teardown.netnsPath ?? '',
      });
    }
    const all = [
      teardown.firstNs,
      teardown.lastNs,
      ...calls.flatMap((c) => [c.enterNs, c.returnNs ?? c.enterNs]),
    ];
    const startNs = earliest(all);
    const endNs = latest(all);
    // The pod's side is named by the primary plugin's DEL, not loopback's.
    const primary = ordered.find((plugin) => plugin.name !== 'loopback') ?? ordered[0];
    const env = pluginEnvironment(primary);
    const missing = this.missing(teardown.lost, []);
    return {
      kind: 'teardown',
      sandboxId: teardown.id,
      runtime: this.options.runtime,
      pod: {
        namespace: env.args.K8S_POD_NAMESPACE ?? null,
        name: env.args.K8S_POD_NAME ?? null,
        uid: env.args.K8S_POD_UID ?? null,
      },
      netns: teardown.netnsPath,
      podIP: null,
      hostVeth: facts.hostVeth,
      podInterface: env.ifname,
      bridge: facts.bridge,
      cni: [...new Set(facts.cni)],
      outcome: this.outcome(missing),
      error: this.primaryError(),
      missing,
      start: this.time(startNs),
      end: this.time(endNs),
      durationMs: millis(startNs, endNs),
      phases: this.phases,
      deviations: [],
      traceparent: facts.traceparent,
    };
  }

  /**
   * What the record may lack, each in one line: the source's reason (`lost`), the finish's, and every phase seen to
   * begin and not to end. A record is `ok` only with none: every phase in it is whole.
   */
  private missing(lost: string | null, reasons: (string | null)[]): string[] {
    const missing = [lost, ...reasons, ...this.unprobed].filter(
      (reason): reason is string => reason !== null,
    );
    for (const phase of this.phases)
      if (phase.end === null) missing.push(`${phase.name}: seen to begin, not to end`);
    return [...new Set(missing)];
  }

  private outcome(missing: string[]): 'ok' | 'failed' | 'incomplete' {
    if (this.errors.length > 0) return 'failed';
    return missing.length > 0 ? 'incomplete' : 'ok';
  }

  /** The deepest failure is the cause; the phases around it failed because of it. */
  private primaryError(): { phase: string; message: string } | null {
    const deepest = [...this.errors].sort((a, b) => b.depth - a.depth)[0];
    return deepest ? { phase: deepest.phase, message: deepest.message } : null;
  }

  private deviations(sandbox: Sandbox, ordered: PluginRun[]): string[] {
    return deviations({
      runtime: this.options.runtime,
      plugins: ordered.map((plugin) => ({
        name: plugin.name,
        startNs: plugin.startNs,
        endNs: plugin.endNs,
        failed: this.failedPlugins.has(plugin),
        steps: plugin.requests.flatMap((request) =>
          request.request ? [netlinkPhaseName(request.request)] : [],
        ),
        ranIpam: plugin.children.length > 0,
      })),
      netnsCreateNs: sandbox.netns?.createNs ?? null,
      sandboxStartNs: sandbox.startBeginNs ?? sandbox.startEndNs,
    });
  }
}

interface Facts {
  cni: string[];
  podIP: string | null;
  hostVeth: string | null;
  podInterface: string | null;
  bridge: string | null;
  traceparent: string | null;
  podNetnsInum: number | null;
  results: { plugin: PluginRun; output: CniOutput }[];
}

function newFacts(podNetnsInum: number | null): Facts {
  return {
    cni: [],
    podIP: null,
    hostVeth: null,
    podInterface: null,
    bridge: null,
    traceparent: null,
    podNetnsInum,
    results: [],
  };
}
