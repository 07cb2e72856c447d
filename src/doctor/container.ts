// What a container around podwire can withhold from it (capabilities, the node's processes, tracefs, the live
// view's directory), how podwire tells, and the line of its DaemonSet manifest that gives it back.
//
// podwire does not refuse on what it lacks, only on what failed: an operation fails first (a /proc/<pid>/exe it
// may not read, a bpftrace that cannot load its programs) and then these name the reason. So the capability-drop
// test measures what podwire needs instead of echoing a list.
import {
  accessSync,
  constants,
  existsSync,
  readdirSync,
  readFileSync,
  readlinkSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { runningRuntimes } from '../binaries/discover.js';
import { installFile } from '../install.js';
import { tracefs } from '../probes/uprobe-events.js';
import type { Check } from './check.js';

/** Linux capabilities by bit number (linux/capability.h), named as Kubernetes names them (no CAP_ prefix). */
const capabilityNames = [
  'CHOWN',
  'DAC_OVERRIDE',
  'DAC_READ_SEARCH',
  'FOWNER',
  'FSETID',
  'KILL',
  'SETGID',
  'SETUID',
  'SETPCAP',
  'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE',
  'NET_BROADCAST',
  'NET_ADMIN',
  'NET_RAW',
  'IPC_LOCK',
  'IPC_OWNER',
  'SYS_MODULE',
  'SYS_RAWIO',
  'SYS_CHROOT',
  'SYS_PTRACE',
  'SYS_PACCT',
  'SYS_ADMIN',
  'SYS_BOOT',
  'SYS_NICE',
  'SYS_RESOURCE',
  'SYS_TIME',
  'SYS_TTY_CONFIG',
  'MKNOD',
  'LEASE',
  'AUDIT_WRITE',
  'AUDIT_CONTROL',
  'SETFCAP',
  'MAC_OVERRIDE',
  'MAC_ADMIN',
  'SYSLOG',
  'WAKE_ALARM',
  'BLOCK_SUSPEND',
  'AUDIT_READ',
  'PERFMON',
  'BPF',
  'CHECKPOINT_RESTORE',
] as const;

export type Capability = (typeof capabilityNames)[number];

/** What podwire does with each capability it needs, as its errors and doctor say it. */
export const capabilityUse = {
  SYS_ADMIN: 'bpftrace loads its programs and attaches uprobes with bpf() and perf_event_open()',
  SYS_PTRACE:
    'podwire finds containerd and reads its binary through /proc/<pid>/exe and /proc/<pid>/root of processes that hold capabilities it lacks',
} satisfies Partial<Record<Capability, string>>;

export type NeededCapability = keyof typeof capabilityUse;

function statusField(status: string, field: string): string | null {
  const line = status.split('\n').find((each) => each.startsWith(`${field}:`));
  return line ? line.slice(field.length + 1).trim() : null;
}

/** The effective capabilities in a /proc/<pid>/status text, by name. */
export function effectiveCapabilities(status: string): Set<Capability> {
  const hex = statusField(status, 'CapEff');
  const bits = hex && /^[0-9a-f]+$/i.test(hex) ? BigInt(`0x${hex}`) : 0n;
  return new Set(capabilityNames.filter((_, bit) => (bits >> BigInt(bit)) & 1n));
}

/**
 * Whether podwire sees the node's processes, from /proc/2/status (null when there is none): kthreadd, the kernel's
 * thread maker, is pid 2 of the node's PID namespace and is seen from no other (a pod without hostPID). NSpid cannot
 * tell: a container's /proc is mounted in its own namespace and shows one level.
 */
export function seesNodeProcesses(pid2Status: string | null): boolean {
  return pid2Status !== null && statusField(pid2Status, 'Name') === 'kthreadd';
}

const readStatus = (pid: number | 'self'): string | null => {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
};

const selfStatus = (): string => readStatus('self') ?? '';

/** Whether podwire runs without `capability` in its effective set. */
export function lacks(capability: NeededCapability): boolean {
  return !effectiveCapabilities(selfStatus()).has(capability);
}

/** What in deploy/kubernetes/daemonset.yaml gives back what a pod lacks, found by the line that says it. */
const manifestLines = {
  SYS_ADMIN: /^\s*- SYS_ADMIN\s*$/,
  SYS_PTRACE: /^\s*- SYS_PTRACE\s*$/,
  hostPID: /^\s*hostPID:/,
  tracefs: /^\s*- name: tracefs\s*$/,
  run: /^\s*- name: run\s*$/,
} as const;

export type ManifestSetting = keyof typeof manifestLines;

/** `deploy/kubernetes/daemonset.yaml:N` for the setting in the manifest podwire was installed with, if it has one. */
export function manifestLine(setting: ManifestSetting, text?: string): string | null {
  let manifest = text;
  if (manifest === undefined) {
    const path = installFile('deploy/kubernetes/daemonset.yaml');
    if (!path) return null;
    try {
      manifest = readFileSync(path, 'utf8');
    } catch {
      return null;
    }
  }
  const index = manifest.split('\n').findIndex((line) => manifestLines[setting].test(line));
  return index < 0 ? null : `deploy/kubernetes/daemonset.yaml:${index + 1}`;
}

const at = (setting: ManifestSetting): string => {
  const line = manifestLine(setting);
  return line ? ` (${line})` : '';
};

/** The fix for a capability podwire lacks, in a pod and on a node. */
export function capabilityFix(capability: NeededCapability): string {
  return `in a pod add ${capability} to the container's securityContext.capabilities.add${at(capability)}; on a node run podwire as root with its full capabilities`;
}

/** One line: what failed, the capability it needs, and how to give it. */
export function lacksCapabilityMessage(failed: string, capability: NeededCapability): string {
  return `${failed}: podwire needs the capability ${capability} (${capabilityUse[capability]}): ${capabilityFix(capability)}`;
}

export const hostPidFix = (): string =>
  `give the pod the node's processes: hostPID: true${at('hostPID')}`;
export const tracefsMountFix = (): string =>
  `in a pod mount the node's ${tracefs} read-write (volumeMounts tracefs${at('tracefs')}); on a node mount -t tracefs tracefs ${tracefs}`;
export const runMountFix = (): string =>
  `in a pod mount the node's /run/podwire (volumeMounts run${at('run')})`;

/** How many processes' /proc/<pid>/exe the kernel refuses to show podwire, and one of them. */
export function hiddenProcesses(): { count: number; example: number | null } {
  let count = 0;
  let example: number | null = null;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      readlinkSync(`/proc/${entry}/exe`);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EACCES' && code !== 'EPERM') continue;
      count++;
      example ??= Number(entry);
    }
  }
  return { count, example };
}

/**
 * Why podwire, finding no runtime, cannot see one that may be there, as one line; null when nothing hides them
 * (then no runtime runs, and podwire traces the kernel side alone, as it says).
 */
export function runtimesHiddenMessage(): string | null {
  if (!seesNodeProcesses(readStatus(2)))
    return `podwire sees only its own container's processes (a PID namespace of its own), not containerd: ${hostPidFix()}`;
  if (!lacks('SYS_PTRACE')) return null;
  const hidden = hiddenProcesses();
  if (hidden.count === 0) return null;
  return lacksCapabilityMessage(
    `cannot see which program ${hidden.count} of the node's processes run (/proc/${hidden.example}/exe: permission denied), so it cannot find containerd`,
    'SYS_PTRACE',
  );
}

/**
 * Why `podwire trace` cannot work here, as one line naming the fix, or null: tracefs missing, or the node's
 * runtimes hidden from it (no hostPID, no SYS_PTRACE) when it is not told which binary to probe.
 */
export function cannotTraceMessage(runtimeBinaries: string[]): string | null {
  if (!existsSync(`${tracefs}/uprobe_events`))
    return `tracefs is not mounted at ${tracefs} (no uprobe_events there): podwire makes its probes in it: ${tracefsMountFix()}`;
  if (runtimeBinaries.length > 0 || runningRuntimes().length > 0) return null;
  return runtimesHiddenMessage();
}

/** What doctor reads of the container around it, apart from the node's own checks. */
export interface ContainerReadings {
  /** /proc/self/status */
  status: string;
  /** /proc/2/status, null when there is none */
  pid2Status: string | null;
  /** Whether the live view's socket directory, /run/podwire, can be written (or made). */
  runDirWritable: boolean;
}

export function readContainer(): ContainerReadings {
  return {
    status: selfStatus(),
    pid2Status: readStatus(2),
    runDirWritable: writableOrCreatable('/run/podwire'),
  };
}

function writableOrCreatable(path: string): boolean {
  try {
    accessSync(existsSync(path) ? path : dirname(path), constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The checks of what a container can withhold: the capabilities podwire needs, the node's processes, the live
 * view's directory. On a node as root they are all ok.
 */
export function containerChecks(r: ContainerReadings): Check[] {
  const effective = effectiveCapabilities(r.status);
  const needed = Object.keys(capabilityUse) as NeededCapability[];
  const missing = needed.filter((capability) => !effective.has(capability));
  const capabilities: Check =
    missing.length === 0
      ? { name: 'capabilities', status: 'ok', detail: `${needed.join(', ')} effective` }
      : {
          name: 'capabilities',
          status: 'missing',
          detail: missing
            .map((capability) => `no ${capability}: ${capabilityUse[capability]}`)
            .join('; '),
          fix: missing.map(capabilityFix).join('; '),
        };
  const hostPid: Check = !seesNodeProcesses(r.pid2Status)
    ? {
        name: 'host PID',
        status: 'missing',
        detail:
          "podwire has a PID namespace of its own: it cannot find containerd or the CNI plugins' processes",
        fix: hostPidFix(),
      }
    : { name: 'host PID', status: 'ok', detail: "the node's processes are podwire's" };
  const liveView: Check = r.runDirWritable
    ? {
        name: 'live view',
        status: 'ok',
        detail: '/run/podwire can hold the socket of podwire attach',
      }
    : {
        name: 'live view',
        status: 'warn',
        detail: '/run/podwire cannot be written: podwire trace serves no socket for podwire attach',
        fix: runMountFix(),
      };
  return [capabilities, hostPid, liveView];
}
