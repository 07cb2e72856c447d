// The per-sandbox state machine: joins probe events by the keys the kernel and runtime hand over (sandbox id,
// pod uid, netns path and inode, process tree, goroutine) into one record per pod handshake or teardown.
// Deterministic: no clock, timer or I/O; time is the events' own. The same events give the same records.
import { type CniOutput, cniEnvironment, cniErrorMessage, cniOutput } from '../decode/cni.js';
import { decodeNetlink, type NetlinkMessage } from '../decode/rtnetlink.js';
import type { ProbeEvent } from '../events.js';
import { earliest, latest, millis, rfc3339Nanos } from '../time.js';
import { netlinkAttributes, netlinkPhaseName } from './netlink-phase.js';
import type { HandshakeRecord, PhaseRecord } from './record.js';

export interface CorrelatorOptions {
  /** realtime - monotonic nanoseconds: turns kernel timestamps into wall-clock times. */
  clockOffsetNs: bigint;
  /** Whether CRI uprobes run: without them a handshake ends at the sandbox start instead of the CRI return. */
  criProbes: boolean;
  runtime: string | null;
  /** A handshake with no event for this long (event time) is given up as `incomplete`. */
  incompleteAfterNs?: bigint;
  /** Without CRI probes, a teardown is reported once its plugins have been quiet this long. */
  teardownQuietNs?: bigint;
  /** Bound on sandboxes followed at once; the oldest is given up as `incomplete` past it. */
  maxInFlight?: number;
}

interface NetlinkRequest {
  sendNs: bigint;
  endNs: bigint | null;
  tid: number;
  fd: number;
  netnsInum: number;
  request: NetlinkMessage | null;
  reply: NetlinkMessage[];
  errno: number | null;
  extack: string | null;
}

interface PluginRun {
  pid: number;
  ppid: number;
  name: string;
  path: string;
  startNs: bigint;
  endNs: bigint | null;
  exitCode: number | null;
  status: number | null;
  env: Record<string, string>;
  stdout: Uint8Array[];
  requests: NetlinkRequest[];
  /** For delegated IPAM: the plugin that exec'd it. */
  parent: PluginRun | null;
  children: PluginRun[];
  netnsInum: number | null;
}

interface Netns {
  path: string;
  inum: number | null;
  createNs: bigint;
  pinnedNs: bigint;
  pid: number;
}

interface CriCall {
  method: string;
  enterNs: bigint;
  returnNs: bigint | null;
  failed: boolean;
  goroutine: string;
  pid: number;
}

interface Sandbox {
  key: number;
  id: string | null;
  pod: { namespace: string | null; name: string | null; uid: string | null };
  run: CriCall | null;
  netns: Netns | null;
  plugins: PluginRun[];
  /** CNI DEL run by the runtime inside a RunPodSandbox that failed, to undo what ADD did. */
  cleanup: PluginRun[];
  startBeginNs: bigint | null;
  startEndNs: bigint | null;
  startAttributes: Record<string, string | number | boolean>;
  firstNs: bigint;
  lastNs: bigint;
  lostEvents: boolean;
  done: boolean;
}

interface Teardown {
  id: string;
  stop: CriCall | null;
  remove: CriCall | null;
  plugins: PluginRun[];
  netnsDeleteNs: bigint | null;
  netnsPath: string | null;
  firstNs: bigint;
  lastNs: bigint;
  lostEvents: boolean;
}

const ADD = 'ADD';
const DEL = 'DEL';

/** A path as a key: containerd passes /var/run/netns/x to plugins but unmounts /run/netns/x. */
const pathKey = (path: string): string => path.replace(/^\/var\/run\//, '/run/');
const basename = (path: string): string => path.slice(path.lastIndexOf('/') + 1);

export class Correlator {
  private readonly options: Required<CorrelatorOptions>;
  private nextKey = 1;
  private sandboxes: Sandbox[] = [];
  private byId = new Map<string, Sandbox>();
  private byUid = new Map<string, Sandbox>();
  private teardowns = new Map<string, Teardown>();
  private plugins = new Map<number, PluginRun>();
  private netnsByPath = new Map<string, Netns>();
  private netnsByInum = new Map<number, Netns>();
  private unshares = new Map<number, { ns: bigint; inum: number }>();
  private criCalls = new Map<string, CriCall & { args: Record<string, string> }>();
  private pendingRequests = new Map<string, NetlinkRequest>();
  /** Pinned namespaces of finished handshakes, by path, so that their deletion joins the right teardown. */
  private netnsOwners = new Map<string, string>();
  private nowNs = 0n;
  private lastSweepNs = 0n;
  /** True while a probe program is down: sandboxes seen meanwhile may miss steps, so none is reported complete. */
  blind = false;

  constructor(options: CorrelatorOptions) {
    this.options = {
      incompleteAfterNs: 60_000_000_000n,
      teardownQuietNs: 5_000_000_000n,
      maxInFlight: 10_000,
      ...options,
    };
  }

  /** Feeds one event; returns the records it completed. */
  push(event: ProbeEvent): HandshakeRecord[] {
    const out: HandshakeRecord[] = [];
    if (event.ns > this.nowNs) this.nowNs = event.ns;
    this.handle(event, out);
    if (this.nowNs - this.lastSweepNs > 1_000_000_000n) {
      this.lastSweepNs = this.nowNs;
      this.sweep(out);
    }
    return out;
  }

  /** Events were lost: every sandbox in flight may miss a step, so none of them can be reported as complete. */
  eventsLost(untilNs = this.nowNs): void {
    for (const sandbox of this.sandboxes) if (!sandbox.done) sandbox.lostEvents = true;
    for (const teardown of this.teardowns.values()) teardown.lostEvents = true;
    if (untilNs > this.lostUntilNs) this.lostUntilNs = untilNs;
  }

  /** Sandboxes that start before this may have lost events too: bpftrace reports a loss after the fact. */
  private lostUntilNs = 0n;

  /** The end of input (exit, end of a recording): everything still open is reported as it stands. */
  flush(): HandshakeRecord[] {
    const out: HandshakeRecord[] = [];
    for (const sandbox of [...this.sandboxes])
      if (!sandbox.done) this.finish(sandbox, out, 'flush');
    for (const teardown of [...this.teardowns.values()]) this.finishTeardown(teardown, out);
    return out;
  }

  get inFlight(): number {
    return this.sandboxes.length + this.teardowns.size;
  }

  private handle(event: ProbeEvent, out: HandshakeRecord[]): void {
    switch (event.kind) {
      case 'cri_enter':
        this.criEnter(event);
        return;
      case 'cri_return':
        this.criReturn(event, out);
        return;
      case 'ns_unshare':
        if (event.ret === 0) this.unshares.set(event.tid, { ns: event.ns, inum: event.netnsInum });
        return;
      case 'ns_clone':
        return;
      case 'ns_mount': {
        const unshare = this.unshares.get(event.tid);
        if (event.ret !== 0) return;
        this.unshares.delete(event.tid);
        const netns: Netns = {
          path: event.target,
          inum: unshare?.inum ?? null,
          createNs: unshare?.ns ?? event.ns,
          pinnedNs: event.ns,
          pid: event.pid,
        };
        this.netnsByPath.set(pathKey(event.target), netns);
        if (netns.inum !== null) this.netnsByInum.set(netns.inum, netns);
        return;
      }
      case 'ns_umount':
        this.netnsDeleted(event.target, event.ns, event.ret);
        return;
      case 'ns_setns': {
        const plugin = this.plugins.get(event.pid);
        if (plugin && event.ret === 0 && event.netnsInum !== plugin.netnsInum)
          plugin.netnsInum ??= event.netnsInum;
        return;
      }
      case 'cni_exec': {
        const parent = this.plugins.get(event.ppid) ?? null;
        const plugin: PluginRun = {
          pid: event.pid,
          ppid: event.ppid,
          name: basename(event.path),
          path: event.path,
          startNs: event.ns,
          endNs: null,
          exitCode: null,
          status: null,
          env: {},
          stdout: [],
          requests: [],
          parent,
          children: [],
          netnsInum: null,
        };
        parent?.children.push(plugin);
        this.plugins.set(event.pid, plugin);
        return;
      }
      case 'cni_env': {
        const plugin = this.plugins.get(event.pid);
        if (plugin) plugin.env[event.name] = event.value;
        return;
      }
      case 'cni_out':
        this.plugins.get(event.pid)?.stdout.push(event.bytes);
        return;
      case 'cni_exit': {
        const plugin = this.plugins.get(event.pid);
        if (plugin) plugin.exitCode = event.code;
        return;
      }
      case 'cni_gone':
        this.pluginGone(event.pid, event.ns, event.status);
        return;
      case 'nl_socket':
        return;
      case 'nl_send': {
        const plugin = this.plugins.get(event.pid);
        if (!plugin) return;
        const [request] = decodeNetlink(event.bytes, event.length);
        const entry: NetlinkRequest = {
          sendNs: event.ns,
          endNs: null,
          tid: event.tid,
          fd: event.fd,
          netnsInum: event.netnsInum,
          request: request ?? null,
          reply: [],
          errno: null,
          extack: null,
        };
        plugin.requests.push(entry);
        this.pendingRequests.set(`${event.pid}:${event.fd}`, entry);
        return;
      }
      case 'nl_recv': {
        const entry = this.pendingRequests.get(`${event.pid}:${event.fd}`);
        if (!entry) return;
        const replies = decodeNetlink(event.bytes, event.length);
        entry.reply.push(...replies);
        entry.endNs ??= event.ns;
        const error = replies.find((reply) => reply.error);
        if (error?.error) {
          entry.errno = error.error.errno;
          entry.endNs = event.ns;
          if (error.error.extack?.msg) entry.extack = error.error.extack.msg;
          this.pendingRequests.delete(`${event.pid}:${event.fd}`);
        }
        return;
      }
      case 'nl_extack': {
        const plugin = this.plugins.get(event.pid);
        const last = plugin?.requests.at(-1);
        if (last) last.extack ??= event.message;
        return;
      }
      case 'sb_exec':
        this.sandboxExec(event.argv, event.ns);
        return;
      case 'sb_init': {
        const netns = this.netnsByInum.get(event.netnsInum);
        if (!netns) return;
        const sandbox = this.sandboxes.find((s) => s.netns === netns && !s.done);
        if (!sandbox || sandbox.startEndNs !== null) return;
        sandbox.startEndNs = event.ns;
        sandbox.startAttributes['process.executable.name'] = basename(event.path);
        sandbox.startAttributes['process.pid'] = event.pid;
        this.touch(sandbox, event.ns);
        if (!this.options.criProbes && this.addsDone(sandbox)) this.finish(sandbox, out, 'started');
        return;
      }
    }
  }

  private newSandbox(ns: bigint): Sandbox {
    const sandbox: Sandbox = {
      key: this.nextKey++,
      id: null,
      pod: { namespace: null, name: null, uid: null },
      run: null,
      netns: null,
      plugins: [],
      cleanup: [],
      startBeginNs: null,
      startEndNs: null,
      startAttributes: {},
      firstNs: ns,
      lastNs: ns,
      lostEvents: this.blind || ns <= this.lostUntilNs,
      done: false,
    };
    this.sandboxes.push(sandbox);
    return sandbox;
  }

  private touch(sandbox: Sandbox, ns: bigint): void {
    if (ns < sandbox.firstNs) sandbox.firstNs = ns;
    if (ns > sandbox.lastNs) sandbox.lastNs = ns;
  }

  /** The sandbox these keys belong to, created on first sight; a later key joins an earlier one. */
  private sandboxFor(
    keys: { id?: string | null; uid?: string | null },
    ns: bigint,
    create = true,
  ): Sandbox | null {
    let sandbox =
      (keys.id ? this.byId.get(keys.id) : undefined) ??
      (keys.uid ? this.byUid.get(keys.uid) : undefined);
    if (!sandbox && !create) return null;
    sandbox ??= this.newSandbox(ns);
    if (keys.id && !sandbox.id) {
      sandbox.id = keys.id;
      this.byId.set(keys.id, sandbox);
    }
    if (keys.uid && !sandbox.pod.uid) {
      sandbox.pod.uid = keys.uid;
      this.byUid.set(keys.uid, sandbox);
    }
    return sandbox;
  }

  private criEnter(event: Extract<ProbeEvent, { kind: 'cri_enter' }>): void {
    const key = `${event.pid}:${event.goroutine}:${event.method}`;
    // A Go prologue that grows the stack jumps back to the entry: a second hit microseconds later is the same
    // call. An older entry on the same goroutine never returned (a panic skips the RETs): the new call replaces it.
    const pending = this.criCalls.get(key);
    if (pending && event.ns - pending.enterNs < 1_000_000n) return;
    this.criCalls.set(key, {
      method: event.method,
      enterNs: event.ns,
      returnNs: null,
      failed: false,
      goroutine: event.goroutine,
      pid: event.pid,
      args: event.args,
    });
    if (event.method === 'StopPodSandbox' || event.method === 'RemovePodSandbox') {
      const id = event.args.sandbox_id;
      if (id) this.teardownFor(id, event.ns);
    }
  }

  private criReturn(
    event: Extract<ProbeEvent, { kind: 'cri_return' }>,
    out: HandshakeRecord[],
  ): void {
    const key = `${event.pid}:${event.goroutine}:${event.method}`;
    const call = this.criCalls.get(key);
    if (!call) return;
    this.criCalls.delete(key);
    call.returnNs = event.ns;
    call.failed = event.failed;
    switch (event.method) {
      case 'RunPodSandbox': {
        const uid = call.args.uid || null;
        const sandbox = this.sandboxFor({ id: event.sandboxId, uid }, call.enterNs);
        if (!sandbox) return;
        sandbox.run = call;
        sandbox.pod.name ??= call.args.name || null;
        sandbox.pod.namespace ??= call.args.namespace || null;
        this.touch(sandbox, call.enterNs);
        this.touch(sandbox, event.ns);
        this.finish(sandbox, out, 'returned');
        return;
      }
      case 'StopPodSandbox':
      case 'RemovePodSandbox': {
        const id = call.args.sandbox_id;
        if (!id) return;
        const teardown = this.teardownFor(id, call.enterNs);
        if (event.method === 'StopPodSandbox') teardown.stop = call;
        else teardown.remove = call;
        teardown.lastNs = event.ns;
        if (event.method === 'RemovePodSandbox') this.finishTeardown(teardown, out);
        return;
      }
    }
  }

  private teardownFor(id: string, ns: bigint): Teardown {
    let teardown = this.teardowns.get(id);
    if (!teardown) {
      teardown = {
        id,
        stop: null,
        remove: null,
        plugins: [],
        netnsDeleteNs: null,
        netnsPath: null,
        firstNs: ns,
        lastNs: ns,
        lostEvents: this.blind || ns <= this.lostUntilNs,
      };
      this.teardowns.set(id, teardown);
    }
    return teardown;
  }

  private netnsDeleted(target: string, ns: bigint, ret: number): void {
    const netns = this.netnsByPath.get(pathKey(target));
    if (ret !== 0) return;
    const id =
      this.netnsOwners.get(pathKey(target)) ??
      [...this.teardowns.values()].find(
        (t) => t.netnsPath && pathKey(t.netnsPath) === pathKey(target),
      )?.id;
    this.netnsOwners.delete(pathKey(target));
    if (netns) {
      this.netnsByPath.delete(pathKey(target));
      if (netns.inum !== null) this.netnsByInum.delete(netns.inum);
    }
    if (id) {
      const teardown = this.teardownFor(id, ns);
      teardown.netnsDeleteNs = ns;
      teardown.netnsPath ??= target;
      teardown.lastNs = ns;
    }
  }

  private sandboxExec(argv: string[], ns: bigint): void {
    const program = basename(argv[0] ?? '');
    let id: string | undefined;
    if (program.startsWith('containerd-shim')) {
      const at = argv.indexOf('-id');
      id = at >= 0 ? argv[at + 1] : undefined;
      if (!argv.includes('start')) return;
    } else if (program === 'runc' && argv.includes('create')) {
      id = argv.at(-1);
    } else return;
    const sandbox = id ? this.byId.get(id) : undefined;
    if (!sandbox || sandbox.done) return;
    if (sandbox.startBeginNs === null || ns < sandbox.startBeginNs) sandbox.startBeginNs = ns;
    if (program === 'runc')
      sandbox.startAttributes['podwire.runc.create'] = rfc3339Nanos(
        ns + this.options.clockOffsetNs,
      );
    this.touch(sandbox, ns);
  }

  private pluginGone(pid: number, ns: bigint, status: number): void {
    const plugin = this.plugins.get(pid);
    if (!plugin) return;
    this.plugins.delete(pid);
    plugin.endNs = ns;
    plugin.status = status;
    if (plugin.exitCode === null && status !== 0) plugin.exitCode = (status >> 8) & 0xff;
    for (const key of [...this.pendingRequests.keys()])
      if (key.startsWith(`${pid}:`)) this.pendingRequests.delete(key);
    if (plugin.parent) return; // Delegated IPAM travels with the plugin that ran it.
    const env = cniEnvironment(plugin.env);
    const command = env.command;
    if (!env.containerId || (command !== ADD && command !== DEL)) return;
    const inFlight = this.byId.get(env.containerId);
    if (
      command === DEL &&
      inFlight &&
      !inFlight.done &&
      this.options.criProbes &&
      inFlight.run === null
    ) {
      inFlight.cleanup.push(plugin);
      this.touch(inFlight, ns);
      return;
    }
    if (command === DEL) {
      const teardown = this.teardownFor(env.containerId, plugin.startNs);
      teardown.plugins.push(plugin);
      teardown.netnsPath ??= env.netns;
      teardown.lastNs = ns;
      return;
    }
    const sandbox = this.sandboxFor(
      { id: env.containerId, uid: env.args.K8S_POD_UID },
      plugin.startNs,
    );
    if (!sandbox || sandbox.done) return;
    sandbox.plugins.push(plugin);
    sandbox.pod.namespace ??= env.args.K8S_POD_NAMESPACE ?? null;
    sandbox.pod.name ??= env.args.K8S_POD_NAME ?? null;
    if (env.netns && !sandbox.netns)
      sandbox.netns = this.netnsByPath.get(pathKey(env.netns)) ?? null;
    this.touch(sandbox, plugin.startNs);
    this.touch(sandbox, ns);
  }

  private addsDone(sandbox: Sandbox): boolean {
    return sandbox.plugins.length > 0 && sandbox.plugins.every((plugin) => plugin.endNs !== null);
  }

  /** Gives up on what has been quiet too long, and (without CRI probes) reports finished teardowns. */
  private sweep(out: HandshakeRecord[]): void {
    for (const sandbox of [...this.sandboxes]) {
      if (sandbox.done) continue;
      const quiet = this.nowNs - sandbox.lastNs;
      const failed = sandbox.plugins.some((plugin) => (plugin.exitCode ?? 0) !== 0);
      if (!this.options.criProbes && failed && quiet > this.options.teardownQuietNs)
        this.finish(sandbox, out, 'failed');
      else if (quiet > this.options.incompleteAfterNs) this.finish(sandbox, out, 'timeout');
    }
    for (const teardown of [...this.teardowns.values()]) {
      const quiet = this.nowNs - teardown.lastNs;
      if (
        (!this.options.criProbes && quiet > this.options.teardownQuietNs) ||
        quiet > this.options.incompleteAfterNs
      ) {
        this.finishTeardown(teardown, out);
      }
    }
    // State whose end was never seen (events lost, a panic, a process killed before it could be seen) expires.
    const expired = (ns: bigint) => this.nowNs - ns > this.options.incompleteAfterNs;
    for (const [key, call] of this.criCalls) if (expired(call.enterNs)) this.criCalls.delete(key);
    for (const [pid, plugin] of this.plugins) if (expired(plugin.startNs)) this.plugins.delete(pid);
    for (const [tid, unshare] of this.unshares) if (expired(unshare.ns)) this.unshares.delete(tid);
    for (const [key, request] of this.pendingRequests) {
      if (expired(request.sendNs)) this.pendingRequests.delete(key);
    }
    while (this.netnsOwners.size > this.options.maxInFlight) {
      const oldest = this.netnsOwners.keys().next().value;
      if (oldest !== undefined) this.netnsOwners.delete(oldest);
    }
    while (this.sandboxes.length > this.options.maxInFlight) {
      const oldest = this.sandboxes[0];
      if (oldest) this.finish(oldest, out, 'timeout');
    }
  }

  private finish(
    sandbox: Sandbox,
    out: HandshakeRecord[],
    why: 'returned' | 'started' | 'failed' | 'timeout' | 'flush',
  ): void {
    sandbox.done = true;
    this.sandboxes = this.sandboxes.filter((s) => s !== sandbox);
    if (sandbox.id) this.byId.delete(sandbox.id);
    if (sandbox.pod.uid) this.byUid.delete(sandbox.pod.uid);
    // The namespace outlives the handshake: its teardown still needs to know whose it is.
    if (sandbox.netns && sandbox.id) this.netnsOwners.set(pathKey(sandbox.netns.path), sandbox.id);
    out.push(new HandshakeBuilder(this.options, 'handshake').build(sandbox, why));
  }

  private finishTeardown(teardown: Teardown, out: HandshakeRecord[]): void {
    this.teardowns.delete(teardown.id);
    out.push(new HandshakeBuilder(this.options, 'teardown').buildTeardown(teardown));
  }
}

/** Builds one record: phases nested as they ran, the fields users filter on, outcome and deviations. */
class HandshakeBuilder {
  private phases: PhaseRecord[] = [];
  private errors: { phase: string; message: string; depth: number }[] = [];

  constructor(
    private readonly options: Required<CorrelatorOptions>,
    private readonly kind: 'handshake' | 'teardown',
  ) {}

  private time(ns: bigint): string {
    return rfc3339Nanos(ns + this.options.clockOffsetNs);
  }

  private add(
    name: string,
    startNs: bigint,
    endNs: bigint | null,
    parentId: number | null,
    attributes: Record<string, string | number | boolean> = {},
  ): PhaseRecord {
    const phase: PhaseRecord = {
      id: this.phases.length,
      parentId,
      name,
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
    const env = cniEnvironment(plugin.env);
    const name = plugin.parent ? `ipam ${plugin.name}` : `cni ${command} ${plugin.name}`;
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
    const output = cniOutput(
      Buffer.concat(plugin.stdout.map((b) => Buffer.from(b))).toString('utf8'),
    );
    if (output.type === 'error') attributes['podwire.cni.error'] = cniErrorMessage(output.error);
    if (output.type === 'result') attributes['podwire.cni.result'] = JSON.stringify(output.result);
    const phase = this.add(name, plugin.startNs, plugin.endNs, parentId, attributes);
    if (output.type === 'result') facts.results.push({ plugin, output });
    if (plugin.endNs === null) facts.unfinished = true;
    if ((plugin.exitCode ?? 0) !== 0 || output.type === 'error') {
      const message =
        output.type === 'error'
          ? cniErrorMessage(output.error)
          : `exited with code ${plugin.exitCode}`;
      this.fail(phase, message, depth);
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
    const phase = this.add(name, request.sendNs, request.endNs, parentId, attributes);
    // A plugin tolerates some errors (EEXIST on its bridge); only the last request of a plugin that failed
    // without a failing IPAM child is taken as the cause.
    const failedChild = plugin.children.some((child) => (child.exitCode ?? 0) !== 0);
    const causal =
      request.errno !== null &&
      request.errno !== 0 &&
      (plugin.exitCode ?? 0) !== 0 &&
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
      const root = this.add('cri RunPodSandbox', run.enterNs, run.returnNs, null, {
        'process.pid': run.pid,
        'podwire.go.goroutine': run.goroutine,
      });
      rootId = root.id;
      if (run.failed) this.fail(root, 'RunPodSandbox returned an error', 0);
    }
    if (sandbox.netns) {
      this.add('netns create', sandbox.netns.createNs, sandbox.netns.pinnedNs, rootId, {
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
    const outcome = this.outcome(
      sandbox.lostEvents ||
        why === 'timeout' ||
        (why === 'flush' && !run?.returnNs) ||
        facts.unfinished,
    );
    return {
      kind: 'handshake',
      sandboxId: sandbox.id,
      runtime: this.options.runtime,
      pod: { ...sandbox.pod },
      netns: sandbox.netns?.path ?? cniEnvironment(primary?.env ?? {}).netns ?? null,
      podIP: facts.podIP ?? resultAddress ?? null,
      hostVeth: facts.hostVeth,
      podInterface: facts.podInterface ?? cniEnvironment(primary?.env ?? {}).ifname ?? null,
      bridge: facts.bridge,
      cni: facts.cni,
      outcome,
      error: this.primaryError(),
      start: this.time(startNs),
      end: this.time(endNs),
      durationMs: millis(startNs, endNs),
      phases: this.phases,
      deviations: this.deviations(sandbox, primary),
      traceparent: facts.traceparent,
    };
  }

  buildTeardown(teardown: Teardown): HandshakeRecord {
    const facts = newFacts(null);
    const calls = [teardown.stop, teardown.remove].filter((c): c is CriCall => c !== null);
    let parentId: number | null = null;
    for (const call of calls) {
      const phase = this.add(`cri ${call.method}`, call.enterNs, call.returnNs, null, {
        'process.pid': call.pid,
      });
      if (call.failed) this.fail(phase, `${call.method} returned an error`, 0);
      if (call.method === 'StopPodSandbox') parentId = phase.id;
    }
    const ordered = [...teardown.plugins].sort((a, b) => (a.startNs < b.startNs ? -1 : 1));
    for (const plugin of ordered) {
      const inside =
        teardown.stop &&
        plugin.startNs >= teardown.stop.enterNs &&
        (teardown.stop.returnNs === null || plugin.startNs <= teardown.stop.returnNs);
      const removeId = this.phases.find((p) => p.name === 'cri RemovePodSandbox')?.id ?? null;
      this.pluginPhases(plugin, DEL, inside ? parentId : (removeId ?? parentId), 1, facts);
    }
    if (teardown.netnsDeleteNs !== null) {
      this.add('netns delete', teardown.netnsDeleteNs, teardown.netnsDeleteNs, parentId, {
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
    const first = ordered[0];
    const env = cniEnvironment(first?.env ?? {});
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
      outcome: this.outcome(teardown.lostEvents || facts.unfinished),
      error: this.primaryError(),
      start: this.time(startNs),
      end: this.time(endNs),
      durationMs: millis(startNs, endNs),
      phases: this.phases,
      deviations: [],
      traceparent: facts.traceparent,
    };
  }

  private outcome(incomplete: boolean): 'ok' | 'failed' | 'incomplete' {
    if (this.errors.length > 0) return 'failed';
    return incomplete ? 'incomplete' : 'ok';
  }

  /** The deepest failure is the cause; the phases around it failed because of it. */
  private primaryError(): { phase: string; message: string } | null {
    const deepest = [...this.errors].sort((a, b) => b.depth - a.depth)[0];
    return deepest ? { phase: deepest.phase, message: deepest.message } : null;
  }

  private deviations(sandbox: Sandbox, primary: PluginRun | null): string[] {
    const deviations: string[] = [];
    if (primary?.endNs && sandbox.startBeginNs !== null && sandbox.startBeginNs > primary.endNs) {
      deviations.push(`sandbox start after cni ADD ${primary.name}`);
    }
    const loopback = sandbox.plugins.find((plugin) => plugin.name === 'loopback');
    if (
      loopback &&
      primary &&
      loopback.startNs < (primary.endNs ?? primary.startNs) &&
      primary.startNs < (loopback.endNs ?? loopback.startNs)
    ) {
      deviations.push(`cni ADD loopback ran in parallel with cni ADD ${primary.name}`);
    }
    if (sandbox.plugins.length === 0) {
      deviations.push(
        'no CNI plugin was seen for this sandbox (host network, or plugins outside the CNI bin dirs podwire watches)',
      );
    }
    const names = new Set(this.phases.map((phase) => phase.name));
    if (names.has('veth create') && !names.has('veth move'))
      deviations.push('veth created with its peer already in the pod netns: no veth move');
    if (names.has('veth create') && !names.has('link rename'))
      deviations.push('pod interface named at creation: no link rename');
    return deviations;
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
  unfinished: boolean;
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
    unfinished: false,
    results: [],
  };
}
