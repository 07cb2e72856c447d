// What the correlator keeps per sandbox while a handshake or teardown is in flight, and the options that bound it.
import { type CniEnvironment, cniEnvironment } from '../decode/cni.js';
import type { NetlinkMessage } from '../decode/rtnetlink.js';

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
  /**
   * The plugins (by file name) whose netlink and stdout are probed in their own code; null: every plugin's I/O is
   * seen. A plugin run outside them makes its record `incomplete`: its steps were not seen, not absent.
   */
  probedPlugins?: string[] | null;
}

export interface NetlinkRequest {
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

export interface PluginRun {
  pid: number;
  ppid: number;
  name: string;
  path: string;
  startNs: bigint;
  endNs: bigint | null;
  exitCode: number | null;
  status: number | null;
  env: Record<string, string>;
  /** `env` read (cniEnvironment), kept until a variable is added: the correlator and builder ask several times. */
  environment: CniEnvironment | null;
  stdout: Uint8Array[];
  requests: NetlinkRequest[];
  /** For delegated IPAM: the plugin that exec'd it. */
  parent: PluginRun | null;
  children: PluginRun[];
  netnsInum: number | null;
  /** False when its netlink and stdout were not probed (see CorrelatorOptions.probedPlugins). */
  probed: boolean;
}

/** The CNI variables of a plugin's environment (none without a plugin), read once for all who ask. */
export function pluginEnvironment(plugin: PluginRun | null | undefined): CniEnvironment {
  if (!plugin) return cniEnvironment({});
  plugin.environment ??= cniEnvironment(plugin.env);
  return plugin.environment;
}

/** The signal that ended a plugin (from its wait status), 0 when it exited by itself or has not ended. */
export function pluginSignal(plugin: PluginRun): number {
  return plugin.status === null ? 0 : plugin.status & 0x7f;
}

/** A plugin that exited with a code other than 0 or was killed by a signal. */
export function pluginFailed(plugin: PluginRun): boolean {
  return (plugin.exitCode ?? 0) !== 0 || pluginSignal(plugin) !== 0;
}

export interface Netns {
  path: string;
  inum: number | null;
  createNs: bigint;
  pinnedNs: bigint;
  pid: number;
}

export interface CriCall {
  method: string;
  enterNs: bigint;
  returnNs: bigint | null;
  failed: boolean;
  goroutine: string;
  pid: number;
}

export interface Sandbox {
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
  /** Why a step may be missing from it (events lost, a program down or behind), or null. */
  lost: string | null;
  done: boolean;
}

export interface Teardown {
  id: string;
  stop: CriCall | null;
  remove: CriCall | null;
  plugins: PluginRun[];
  netnsDeleteNs: bigint | null;
  netnsPath: string | null;
  firstNs: bigint;
  lastNs: bigint;
  /** Why a step may be missing from it, or null. */
  lost: string | null;
}

export const ADD = 'ADD';
export const DEL = 'DEL';

/** A path as a key: containerd passes /var/run/netns/x to plugins but unmounts /run/netns/x. */
export const pathKey = (path: string): string => path.replace(/^\/var\/run\//, '/run/');
export const basename = (path: string): string => path.slice(path.lastIndexOf('/') + 1);
