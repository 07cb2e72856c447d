// The per-sandbox state machine: joins probe events by the keys the kernel and runtime hand over (sandbox id,
// pod uid, netns path and inode, process tree, goroutine) into one record per pod handshake or teardown.
// Deterministic: no clock, timer or I/O; time is the events' own. The same events give the same records.
import { decodeNetlink } from '../decode/rtnetlink.js';
import type { ProbeEvent } from '../events.js';
import { rfc3339Nanos } from '../time.js';
import { HandshakeBuilder } from './builder.js';
import type { HandshakeRecord } from './record.js';
import {
  ADD,
  basename,
  type CorrelatorOptions,
  type CriCall,
  DEL,
  type NetlinkRequest,
  type Netns,
  type PluginRun,
  pathKey,
  pluginEnvironment,
  pluginFailed,
  pluginSignal,
  type Sandbox,
  type Teardown,
} from './state.js';

export type { CorrelatorOptions } from './state.js';

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
  /** Netlink requests waiting for their answer, by plugin pid, then sequence number: a plugin's go when it exits. */
  private pendingRequests = new Map<number, Map<number, NetlinkRequest>>();
  /** Pinned namespaces of finished handshakes, by path, so that their deletion joins the right teardown. */
  private netnsOwners = new Map<string, string>();
  private nowNs = 0n;
  /** The next sweep comes after this: kept as the bound rather than the last sweep, so no bigint is made per event. */
  private sweepAfterNs = 1_000_000_000n;
  /** Whether CRI uprobes run (may change when a runtime appears): decides when a handshake is complete. */
  get criProbes(): boolean {
    return this.options.criProbes;
  }

  set criProbes(on: boolean) {
    this.options.criProbes = on;
  }

  /** Which plugins' I/O is probed from now on (null: all), as the kernel program was made again. */
  set probedPlugins(names: string[] | null) {
    this.options.probedPlugins = names;
  }

  /** True while a probe program is down: sandboxes seen meanwhile may miss steps, so none is reported complete. */
  /** Why the correlator is blind to part of the node now (a probe program down), or null while it sees all. */
  blind: string | null = null;

  constructor(options: CorrelatorOptions) {
    this.options = {
      incompleteAfterNs: 60_000_000_000n,
      teardownQuietNs: 5_000_000_000n,
      maxInFlight: 10_000,
      probedPlugins: null,
      ...options,
    };
  }

  /** Feeds one event; returns the records it completed. */
  push(event: ProbeEvent): HandshakeRecord[] {
    const out: HandshakeRecord[] = [];
    this.pushInto(event, out);
    return out;
  }

  /** push() appending to the caller's list, so that no list is made per event. */
  pushInto(event: ProbeEvent, out: HandshakeRecord[]): void {
    if (event.ns > this.nowNs) this.nowNs = event.ns;
    this.handle(event, out);
    if (this.nowNs > this.sweepAfterNs) {
      this.sweepAfterNs = this.nowNs + 1_000_000_000n;
      this.sweep(out);
    }
  }

  /**
   * Events were lost (`why`, as the record will say it): every sandbox in flight may miss a step, so none of them
   * can be reported as complete.
   */
  eventsLost(why: string, untilNs = this.nowNs): void {
    for (const sandbox of this.sandboxes) if (!sandbox.done) sandbox.lost ??= why;
    for (const teardown of this.teardowns.values()) teardown.lost ??= why;
    if (untilNs > this.lostUntilNs) {
      this.lostUntilNs = untilNs;
      this.lostUntilWhy = why;
    }
  }

  /** Sandboxes that start before this may have lost events too: bpftrace reports a loss after the fact. */
  private lostUntilNs = 0n;
  private lostUntilWhy = '';

  /** Why something that begins at `ns` may miss a step from the start, or null. */
  private lostAt(ns: bigint): string | null {
    return this.blind ?? (ns <= this.lostUntilNs ? this.lostUntilWhy : null);
  }

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

  /** The pod namespaces it remembers (pinned, their unmount not seen yet): bounded by maxInFlight. */
  get namespacesKnown(): number {
    return this.netnsByPath.size;
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
          environment: null,
          stdout: [],
          requests: [],
          parent,
          children: [],
          netnsInum: null,
          probed: this.options.probedPlugins?.includes(basename(event.path)) ?? true,
        };
        parent?.children.push(plugin);
        this.plugins.set(event.pid, plugin);
        return;
      }
      case 'cni_env': {
        const plugin = this.plugins.get(event.pid);
        if (!plugin) return;
        plugin.env[event.name] = event.value;
        plugin.environment = null;
        return;
      }
      case 'cni_out':
        this.plugins.get(event.pid)?.stdout.push(event.bytes);
        return;
      case 'cni_gone':
        this.pluginGone(event.pid, event.ns, event.status);
        return;
      case 'nl_socket':
        return;
      case 'nl_send': {
        const plugin = this.plugins.get(event.pid);
        if (!plugin) return;
        const seq = netlinkSeq(event.bytes);
        const pending = seq === null ? undefined : this.pendingRequests.get(event.pid)?.get(seq);
        // The same request again before any answer: the entry uprobe fired twice for one call (Go's stack growth
        // runs a function's start again), not a second request.
        if (pending && pending.endNs === null && pending.tid === event.tid) return;
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
        if (seq !== null) {
          const requests = this.pendingRequests.get(event.pid);
          if (requests) requests.set(seq, entry);
          else this.pendingRequests.set(event.pid, new Map([[seq, entry]]));
        }
        return;
      }
      case 'nl_recv': {
        // The answer echoes its request's sequence number: plugin-io.bt does not see the socket's fd.
        const seq = netlinkSeq(event.bytes);
        if (seq === null) return;
        const requests = this.pendingRequests.get(event.pid);
        const entry = requests?.get(seq);
        if (!requests || !entry) return;
        entry.endNs ??= event.ns;
        // Only an error (or ack) says how the request went; data replies are not decoded at all.
        if (!carriesError(event.bytes)) return;
        const replies = decodeNetlink(event.bytes, event.length);
        entry.reply.push(...replies);
        const error = replies.find((reply) => reply.error);
        if (error?.error) {
          entry.errno = error.error.errno;
          entry.endNs = event.ns;
          if (error.error.extack?.msg) entry.extack = error.error.extack.msg;
          requests.delete(seq);
          if (requests.size === 0) this.pendingRequests.delete(event.pid);
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
        if (sandbox.run?.returnNs) this.finish(sandbox, out, 'returned');
        else if (!this.options.criProbes && this.addsDone(sandbox))
          this.finish(sandbox, out, 'started');
        return;
      }
      default:
        // A kind added to ProbeEvent fails to compile here until the correlator decides what it means.
        event satisfies never;
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
      lost: this.lostAt(ns),
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
    // Keyed by goroutine: the process id of a hit is 0 when its thread was gone before it could be looked up.
    const key = `${event.goroutine}:${event.method}`;
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
      const id = this.resolveSandboxId(event.args.sandbox_id);
      if (id) this.teardownFor(id, event.ns);
    }
  }

  private criReturn(
    event: Extract<ProbeEvent, { kind: 'cri_return' }>,
    out: HandshakeRecord[],
  ): void {
    const key = `${event.goroutine}:${event.method}`;
    const call = this.criCalls.get(key);
    // Two runtimes of one binary can reuse a goroutine address: known, different processes are different calls.
    if (!call || (call.pid !== 0 && event.pid !== 0 && call.pid !== event.pid)) return;
    call.pid ||= event.pid;
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
        // RunPodSandbox can return before the sandbox's process has exec'd (runc start releases it and returns):
        // the record waits a moment for it rather than leave `sandbox start` open.
        if (!this.awaitingInit(sandbox)) this.finish(sandbox, out, 'returned');
        return;
      }
      case 'StopPodSandbox':
      case 'RemovePodSandbox': {
        const id = this.resolveSandboxId(call.args.sandbox_id);
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

  /**
   * A sandbox id read from the runtime's memory can come back cut short (the kernel stops a string read at a page
   * it cannot fault in): a shorter id that starts one podwire knows, and only one, is that one.
   */
  private resolveSandboxId(id: string | undefined): string | undefined {
    if (id === undefined || id.length === 0 || /^[0-9a-f]{64}$/.test(id)) return id;
    if (id.length < 12) return id;
    const known = new Set([
      ...this.teardowns.keys(),
      ...this.byId.keys(),
      ...this.netnsOwners.values(),
    ]);
    const matches = [...known].filter(
      (candidate) => candidate.length > id.length && candidate.startsWith(id),
    );
    return matches.length === 1 ? matches[0] : id;
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
        lost: this.lostAt(ns),
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
    // The wait status has the exit code (bits 8-15) unless a signal ended it (low 7 bits).
    if (pluginSignal(plugin) === 0) plugin.exitCode = (status >> 8) & 0xff;
    this.pendingRequests.delete(pid);
    if (plugin.parent) return; // Delegated IPAM travels with the plugin that ran it.
    const env = pluginEnvironment(plugin);
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

  /** Returned, its sandbox started and not yet seen to exec its process. */
  private awaitingInit(sandbox: Sandbox): boolean {
    return (
      sandbox.run?.returnNs != null &&
      !sandbox.run.failed &&
      sandbox.startBeginNs !== null &&
      sandbox.startEndNs === null
    );
  }

  private addsDone(sandbox: Sandbox): boolean {
    return sandbox.plugins.length > 0 && sandbox.plugins.every((plugin) => plugin.endNs !== null);
  }

  /** Gives up on what has been quiet too long, and (without CRI probes) reports finished teardowns. */
  private sweep(out: HandshakeRecord[]): void {
    for (const sandbox of [...this.sandboxes]) {
      if (sandbox.done) continue;
      const quiet = this.nowNs - sandbox.lastNs;
      const failed = sandbox.plugins.some(pluginFailed);
      if (!this.options.criProbes && failed && quiet > this.options.teardownQuietNs)
        this.finish(sandbox, out, 'failed');
      else if (this.awaitingInit(sandbox) && quiet > initGraceNs)
        this.finish(sandbox, out, 'returned');
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
    for (const [pid, requests] of this.pendingRequests) {
      for (const [seq, request] of requests) if (expired(request.sendNs)) requests.delete(seq);
      if (requests.size === 0) this.pendingRequests.delete(pid);
    }
    while (this.netnsOwners.size > this.options.maxInFlight) {
      const oldest = this.netnsOwners.keys().next().value;
      if (oldest !== undefined) this.netnsOwners.delete(oldest);
    }
    // Namespaces whose unmount was never seen (events lost) are forgotten, oldest first, past the same bound.
    while (this.netnsByPath.size > this.options.maxInFlight) {
      const [key, netns] = this.netnsByPath.entries().next().value as [string, Netns];
      this.netnsByPath.delete(key);
      if (netns.inum !== null && this.netnsByInum.get(netns.inum) === netns)
        this.netnsByInum.delete(netns.inum);
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

const NLMSG_ERROR = 2;

/** How long after RunPodSandbox returned the sandbox's process may still exec (seen up to ~110 ms on 2 cores). */
const initGraceNs = 2_000_000_000n;

/** nlmsg_seq of the first message in a buffer (bytes 8..11, little-endian), or null when it is cut before that. */
function netlinkSeq(bytes: Uint8Array): number | null {
  if (bytes.length < 12) return null;
  return (
    ((bytes[8] ?? 0) |
      ((bytes[9] ?? 0) << 8) |
      ((bytes[10] ?? 0) << 16) |
      ((bytes[11] ?? 0) << 24)) >>>
    0
  );
}

/** Whether a netlink buffer holds an NLMSG_ERROR message, read from the headers alone. */
function carriesError(bytes: Uint8Array): boolean {
  let offset = 0;
  while (offset + 16 <= bytes.length) {
    const length =
      (bytes[offset] ?? 0) |
      ((bytes[offset + 1] ?? 0) << 8) |
      ((bytes[offset + 2] ?? 0) << 16) |
      ((bytes[offset + 3] ?? 0) << 24);
    if (((bytes[offset + 4] ?? 0) | ((bytes[offset + 5] ?? 0) << 8)) === NLMSG_ERROR) return true;
    if (length < 16) return false;
    offset += (length + 3) & ~3;
  }
  return false;
}
