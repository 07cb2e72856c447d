// A Kubernetes pod template turned into the CRI requests a kubelet sends for it: the sandbox config and one
// container config each. The lab runs the DaemonSet's pod from its manifest through this, so what runs is what the
// manifest says; a field the lab cannot honour is a one-line error naming it, never quietly dropped.
//
// Follows the kubelet's own translation (pkg/kubelet/kuberuntime: generatePodSandboxConfig, generateContainerConfig,
// determineEffectiveSecurityContext). Left out, as the lab has no API server or cluster DNS: the /etc/hosts,
// /etc/resolv.conf and termination-log mounts the kubelet adds, service-account tokens, and `$(VAR)` expansion.
import { join } from 'node:path';
import type {
  ContainerConfig,
  KeyValue,
  LinuxContainerResources,
  Mount,
  NamespaceMode,
  PodSandboxConfig,
  SecurityProfile,
} from '../cri/types.js';

/** The fields of a Kubernetes PodTemplateSpec the lab reads (names as in the Kubernetes API). */
export interface PodTemplate {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: PodSpec;
}

interface SeccompProfile {
  type: 'RuntimeDefault' | 'Unconfined' | 'Localhost';
  localhostProfile?: string;
}
type AppArmorProfile = SeccompProfile;

interface PodSpec {
  hostPID?: boolean;
  hostNetwork?: boolean;
  hostIPC?: boolean;
  shareProcessNamespace?: boolean;
  securityContext?: {
    runAsUser?: number;
    runAsGroup?: number;
    runAsNonRoot?: boolean;
    supplementalGroups?: number[];
    seccompProfile?: SeccompProfile;
    appArmorProfile?: AppArmorProfile;
    sysctls?: { name: string; value: string }[];
  };
  volumes?: Volume[];
  containers: ContainerSpec[];
  initContainers?: unknown[];
  terminationGracePeriodSeconds?: number;
}

interface Volume {
  name: string;
  hostPath?: { path: string; type?: string };
  emptyDir?: { medium?: string; sizeLimit?: string };
  [other: string]: unknown;
}

interface ContainerSpec {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  workingDir?: string;
  env?: {
    name: string;
    value?: string;
    valueFrom?: { fieldRef?: { fieldPath: string }; [other: string]: unknown };
  }[];
  envFrom?: unknown[];
  volumeMounts?: {
    name: string;
    mountPath: string;
    readOnly?: boolean;
    subPath?: string;
    mountPropagation?: 'None' | 'HostToContainer' | 'Bidirectional';
  }[];
  resources?: {
    requests?: Record<string, string | number>;
    limits?: Record<string, string | number>;
  };
  securityContext?: {
    privileged?: boolean;
    capabilities?: { add?: string[]; drop?: string[] };
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    runAsUser?: number;
    runAsGroup?: number;
    runAsNonRoot?: boolean;
    seccompProfile?: SeccompProfile;
    appArmorProfile?: AppArmorProfile;
  };
  [other: string]: unknown;
}

/** Who the pod is on this node: what the API server and the kubelet would have filled in. */
export interface PodIdentity {
  name: string;
  namespace: string;
  uid: string;
  nodeName: string;
  /** The node's address, for `status.hostIP`. */
  hostIp: string;
  /** The pod's own logs, as /var/log/pods/<namespace>_<name>_<uid>. */
  logDirectory: string;
  cgroupParent: string;
  /** Where an emptyDir volume lives on the node (the kubelet's pods/<uid>/volumes/kubernetes.io~empty-dir/<name>). */
  emptyDirRoot: string;
}

/** What the kubelet would ask of the runtime for this template; `directories` must exist before CreateContainer. */
export interface CriPod {
  sandbox: PodSandboxConfig;
  containers: ContainerConfig[];
  directories: { path: string; reason: string }[];
}

export class PodTemplateError extends Error {}

const unsupported = (what: string): never => {
  throw new PodTemplateError(
    `the lab cannot run ${what} (it plays the kubelet for the fields podwire's manifests use): drop it from the manifest or extend src/lab/pod-template.ts`,
  );
};

/** Kubernetes profile → CRI profile; absent stays absent (the runtime's default, as with the kubelet). */
function securityProfile(profile: SeccompProfile | undefined): SecurityProfile | undefined {
  if (!profile) return undefined;
  if (profile.type === 'Localhost')
    return { profileType: 'Localhost', localhostRef: profile.localhostProfile ?? '' };
  return { profileType: profile.type };
}

/** `100m`, `0.5`, `2` → millicores. */
export function milliCpu(quantity: string | number): number {
  const text = String(quantity);
  const match = /^(\d+(?:\.\d+)?)(m?)$/.exec(text);
  if (!match) return unsupported(`the CPU quantity ${text}`);
  const value = Number(match[1]);
  return match[2] === 'm' ? Math.round(value) : Math.round(value * 1000);
}

const binarySuffixes: Record<string, number> = {
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};
const decimalSuffixes: Record<string, number> = { k: 1e3, M: 1e6, G: 1e9, T: 1e12, '': 1 };

/** `256Mi`, `1G`, `1000000` → bytes. */
export function bytes(quantity: string | number): number {
  const text = String(quantity);
  const match = /^(\d+(?:\.\d+)?)([KMGT]i|[kMGT])?$/.exec(text);
  if (!match) return unsupported(`the memory quantity ${text}`);
  const suffix = match[2] ?? '';
  const factor = binarySuffixes[suffix] ?? decimalSuffixes[suffix] ?? 1;
  return Math.round(Number(match[1]) * factor);
}

/** The kubelet's CFS and shares arithmetic (pkg/kubelet/cm: MilliCPUToShares, MilliCPUToQuota). */
function resources(container: ContainerSpec): LinuxContainerResources | undefined {
  const { requests = {}, limits = {} } = container.resources ?? {};
  for (const name of [...Object.keys(requests), ...Object.keys(limits)]) {
    if (name !== 'cpu' && name !== 'memory') unsupported(`the resource ${name}`);
  }
  if (Object.keys(requests).length === 0 && Object.keys(limits).length === 0) return undefined;
  const period = 100_000;
  const result: LinuxContainerResources = {};
  const cpuRequest = requests.cpu ?? limits.cpu;
  if (cpuRequest !== undefined)
    result.cpuShares = BigInt(Math.max(2, Math.floor((milliCpu(cpuRequest) * 1024) / 1000)));
  if (limits.cpu !== undefined) {
    result.cpuPeriod = BigInt(period);
    result.cpuQuota = BigInt(Math.max(1000, Math.floor((milliCpu(limits.cpu) * period) / 1000)));
  }
  if (limits.memory !== undefined) result.memoryLimitInBytes = BigInt(bytes(limits.memory));
  return result;
}

function fieldValue(fieldPath: string, pod: PodIdentity): string {
  switch (fieldPath) {
    case 'spec.nodeName':
      return pod.nodeName;
    case 'metadata.name':
      return pod.name;
    case 'metadata.namespace':
      return pod.namespace;
    case 'metadata.uid':
      return pod.uid;
    case 'status.hostIP':
      return pod.hostIp;
    default:
      return unsupported(`the downward API field ${fieldPath}`);
  }
}

function envs(container: ContainerSpec, pod: PodIdentity): KeyValue[] {
  if (container.envFrom?.length) unsupported(`envFrom in container ${container.name}`);
  return (container.env ?? []).map((env) => {
    if (env.value !== undefined) return { key: env.name, value: env.value };
    const fieldPath = env.valueFrom?.fieldRef?.fieldPath;
    if (fieldPath === undefined) return unsupported(`env ${env.name} from anything but fieldRef`);
    return { key: env.name, value: fieldValue(fieldPath, pod) };
  });
}

const propagation = {
  None: 'PROPAGATION_PRIVATE',
  HostToContainer: 'PROPAGATION_HOST_TO_CONTAINER',
  Bidirectional: 'PROPAGATION_BIDIRECTIONAL',
} as const;

function mounts(
  container: ContainerSpec,
  volumes: Map<string, Volume>,
  pod: PodIdentity,
  directories: CriPod['directories'],
): Mount[] {
  return (container.volumeMounts ?? []).map((mount) => {
    const volume = volumes.get(mount.name);
    if (!volume)
      throw new PodTemplateError(
        `volumeMount ${mount.name} names no volume of the pod: fix the manifest`,
      );
    if (mount.subPath) unsupported(`subPath in volumeMount ${mount.name}`);
    let hostPath: string;
    if (volume.hostPath) {
      hostPath = volume.hostPath.path;
      const type = volume.hostPath.type ?? '';
      if (type === 'DirectoryOrCreate')
        directories.push({ path: hostPath, reason: `hostPath ${volume.name}` });
      else if (type !== '' && type !== 'Directory' && type !== 'File' && type !== 'Socket')
        unsupported(`hostPath type ${type} (volume ${volume.name})`);
    } else if (volume.emptyDir) {
      if (volume.emptyDir.medium)
        unsupported(`emptyDir medium ${volume.emptyDir.medium} (volume ${volume.name})`);
      hostPath = join(pod.emptyDirRoot, volume.name);
      directories.push({ path: hostPath, reason: `emptyDir ${volume.name}` });
    } else {
      const kind = Object.keys(volume).find((key) => key !== 'name') ?? 'an empty volume';
      return unsupported(`a ${kind} volume (${volume.name})`);
    }
    return {
      containerPath: mount.mountPath,
      hostPath,
      readonly: mount.readOnly ?? false,
      propagation: propagation[mount.mountPropagation ?? 'None'],
    };
  });
}

function namespaceOptions(spec: PodSpec): {
  network: NamespaceMode;
  pid: NamespaceMode;
  ipc: NamespaceMode;
} {
  return {
    network: spec.hostNetwork ? 'NODE' : 'POD',
    pid: spec.hostPID ? 'NODE' : spec.shareProcessNamespace ? 'POD' : 'CONTAINER',
    ipc: spec.hostIPC ? 'NODE' : 'POD',
  };
}

const int64 = (value: number | undefined): bigint | undefined =>
  value === undefined ? undefined : BigInt(value);

/** The sandbox and container configs the kubelet would send for `template` as the pod `pod`. */
export function criPod(template: PodTemplate, pod: PodIdentity): CriPod {
  const { spec } = template;
  if (spec.initContainers?.length) unsupported('init containers');
  const podSecurity = spec.securityContext ?? {};
  if (podSecurity.sysctls?.length) unsupported('sysctls');
  const labels = {
    ...(template.metadata?.labels ?? {}),
    'io.kubernetes.pod.name': pod.name,
    'io.kubernetes.pod.namespace': pod.namespace,
    'io.kubernetes.pod.uid': pod.uid,
  };
  const namespaces = namespaceOptions(spec);
  const sandbox: PodSandboxConfig = {
    metadata: { name: pod.name, namespace: pod.namespace, uid: pod.uid, attempt: 0 },
    // The kubelet leaves the hostname empty for a pod on the node's network: it keeps the node's.
    ...(spec.hostNetwork ? {} : { hostname: pod.name.slice(0, 63).replace(/[-.]+$/, '') }),
    logDirectory: pod.logDirectory,
    labels,
    annotations: {
      ...(template.metadata?.annotations ?? {}),
      'kubernetes.io/config.source': 'podwire-lab',
    },
    linux: {
      cgroupParent: pod.cgroupParent,
      securityContext: {
        namespaceOptions: namespaces,
        runAsUser: int64(podSecurity.runAsUser),
        runAsGroup: int64(podSecurity.runAsGroup),
        supplementalGroups: podSecurity.supplementalGroups?.map(BigInt),
        privileged: spec.containers.some((c) => c.securityContext?.privileged === true),
        seccomp: securityProfile(podSecurity.seccompProfile),
      },
    },
  };
  const volumes = new Map((spec.volumes ?? []).map((volume) => [volume.name, volume]));
  const directories: CriPod['directories'] = [];
  const containers = spec.containers.map((container): ContainerConfig => {
    for (const field of ['lifecycle', 'startupProbe', 'livenessProbe', 'stdin', 'tty']) {
      if (container[field] !== undefined) unsupported(`${field} in container ${container.name}`);
    }
    const security = container.securityContext ?? {};
    const runAsNonRoot = security.runAsNonRoot ?? podSecurity.runAsNonRoot;
    const runAsUser = security.runAsUser ?? podSecurity.runAsUser;
    if (runAsNonRoot && runAsUser === 0)
      throw new PodTemplateError(
        `container ${container.name} has runAsNonRoot with runAsUser 0: the kubelet refuses to start it; fix the manifest`,
      );
    return {
      metadata: { name: container.name, attempt: 0 },
      image: { image: container.image, userSpecifiedImage: container.image },
      command: container.command ?? [],
      args: container.args ?? [],
      workingDir: container.workingDir ?? '',
      envs: envs(container, pod),
      mounts: mounts(container, volumes, pod, directories),
      labels: {
        'io.kubernetes.container.name': container.name,
        'io.kubernetes.pod.name': pod.name,
        'io.kubernetes.pod.namespace': pod.namespace,
        'io.kubernetes.pod.uid': pod.uid,
      },
      annotations: {},
      logPath: `${container.name}/0.log`,
      linux: {
        resources: resources(container),
        securityContext: {
          capabilities: {
            addCapabilities: security.capabilities?.add ?? [],
            dropCapabilities: security.capabilities?.drop ?? [],
          },
          privileged: security.privileged ?? false,
          namespaceOptions: namespaces,
          runAsUser: int64(runAsUser),
          runAsGroup: int64(security.runAsGroup ?? podSecurity.runAsGroup),
          readonlyRootfs: security.readOnlyRootFilesystem ?? false,
          noNewPrivs: security.allowPrivilegeEscalation === false,
          seccomp: securityProfile(security.seccompProfile ?? podSecurity.seccompProfile),
          apparmor: securityProfile(security.appArmorProfile ?? podSecurity.appArmorProfile),
        },
      },
    };
  });
  return { sandbox, containers, directories };
}
