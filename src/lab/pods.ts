// The lab acting as the kubelet: RunPodSandbox with full pod metadata, P at a time, and Stop/Remove.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type ContainerConfig, CriClient, type PodSandboxConfig } from '../cri/client.js';
import { pauseImageRef } from './config.js';
import { runningDaemon } from './containerd.js';
import { criEndpoint, LabError, labCgroupParent, sandboxNetns } from './lab.js';
import type { LabPaths } from './paths.js';
import { rememberNetns } from './record.js';

export interface CreateOptions {
  count: number;
  parallel: number;
  namespace: string;
  prefix: string;
  /** Also create and start one application container in each sandbox, as the kubelet does next. */
  withContainer: boolean;
}

export interface CreatedPod {
  name: string;
  namespace: string;
  uid: string;
  sandboxId: string | null;
  ip: string | null;
  netns: string | null;
  runPodSandboxMs: number;
  containerId: string | null;
  error: string | null;
}

/** Like a ReplicaSet's pod names: the prefix and five random lowercase characters. */
function podName(prefix: string): string {
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
  const bytes = randomBytes(5);
  return `${prefix}-${[...bytes].map((b) => alphabet[b % alphabet.length]).join('')}`;
}

export function sandboxConfig(
  paths: LabPaths,
  name: string,
  namespace: string,
  uid: string,
): PodSandboxConfig {
  const logDirectory = join(paths.podLogDir, `${namespace}_${name}_${uid}`);
  mkdirSync(logDirectory, { recursive: true });
  return {
    metadata: { name, namespace, uid, attempt: 0 },
    // As the kubelet does: at most 63 characters (sethostname refuses more), without a - or . at the end.
    hostname: name.slice(0, 63).replace(/[-.]+$/, ''),
    logDirectory,
    labels: {
      app: name.replace(/-[^-]*$/, ''),
      'io.kubernetes.pod.name': name,
      'io.kubernetes.pod.namespace': namespace,
      'io.kubernetes.pod.uid': uid,
    },
    annotations: { 'kubernetes.io/config.source': 'podwire-lab' },
    linux: {
      cgroupParent: `${labCgroupParent}/pod${uid}`,
      securityContext: { namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } },
    },
  };
}

function containerConfig(podName: string): ContainerConfig {
  return {
    metadata: { name: 'app', attempt: 0 },
    image: { image: pauseImageRef },
    labels: { 'io.kubernetes.container.name': 'app', 'io.kubernetes.pod.name': podName },
    logPath: 'app/0.log',
  };
}

/** The label that tells the lab's DaemonSet pod (`lab daemonset up`) from the pods `lab pods create` makes. */
export const daemonSetLabel = 'podwire.io/lab-daemonset';

/** A connected client for the running lab, or one line saying to start it. */
export function labClient(paths: LabPaths): CriClient {
  if (!runningDaemon(paths)) throw new LabError('the lab is not up: run podwire lab up first');
  return CriClient.connect(criEndpoint(paths));
}

async function createOne(
  client: CriClient,
  paths: LabPaths,
  options: CreateOptions,
): Promise<CreatedPod> {
  const name = podName(options.prefix);
  const uid = randomUUID();
  const config = sandboxConfig(paths, name, options.namespace, uid);
  const pod: CreatedPod = {
    name,
    namespace: options.namespace,
    uid,
    sandboxId: null,
    ip: null,
    netns: null,
    runPodSandboxMs: 0,
    containerId: null,
    error: null,
  };
  const started = performance.now();
  try {
    pod.sandboxId = await client.runPodSandbox(config);
  } catch (error) {
    pod.runPodSandboxMs = performance.now() - started;
    pod.error = (error as Error).message;
    return pod;
  }
  pod.runPodSandboxMs = performance.now() - started;
  try {
    const { status } = await client.podSandboxStatus(pod.sandboxId);
    pod.ip = status.network?.ip || null;
    pod.netns = await sandboxNetns(client, pod.sandboxId);
    if (pod.netns) rememberNetns(paths, [pod.netns]);
    if (options.withContainer) {
      pod.containerId = await client.createContainer(pod.sandboxId, containerConfig(name), config);
      await client.startContainer(pod.containerId);
    }
  } catch (error) {
    pod.error = (error as Error).message;
  }
  return pod;
}

/** Creates `count` pods, `parallel` at a time; each is reported as it finishes, a failure does not stop the rest. */
export async function createPods(
  paths: LabPaths,
  options: CreateOptions,
  onPod: (pod: CreatedPod) => void,
): Promise<CreatedPod[]> {
  const client = labClient(paths);
  const created: CreatedPod[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < options.count) {
      next++;
      const pod = await createOne(client, paths, options);
      created.push(pod);
      onPod(pod);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(options.parallel, options.count) }, worker));
  } finally {
    client.close();
  }
  return created;
}

export interface DeletedPod {
  sandboxId: string;
  error: string | null;
}

/** StopPodSandbox then RemovePodSandbox, as the kubelet does; ids may be unique prefixes. */
export async function deletePods(
  paths: LabPaths,
  ids: string[] | 'all',
  onPod: (pod: DeletedPod) => void,
): Promise<DeletedPod[]> {
  const client = labClient(paths);
  try {
    const sandboxes = await client.listPodSandbox();
    const known = sandboxes.map((sandbox) => sandbox.id);
    const targets: string[] = [];
    // `--all` is every pod the lab created; the DaemonSet's pod goes with `lab daemonset down`, as with a kubelet.
    if (ids === 'all')
      targets.push(
        ...sandboxes
          .filter((sandbox) => sandbox.labels[daemonSetLabel] !== 'true')
          .map((s) => s.id),
      );
    else {
      for (const id of ids) {
        const matches = known.filter((candidate) => candidate.startsWith(id));
        if (matches.length !== 1) {
          throw new LabError(
            matches.length === 0
              ? `no lab pod has id ${id}: see podwire lab status`
              : `id ${id} matches ${matches.length} pods: give more of it`,
          );
        }
        targets.push(matches[0] as string);
      }
    }
    const deleted: DeletedPod[] = [];
    for (const sandboxId of targets) {
      const pod: DeletedPod = { sandboxId, error: null };
      try {
        await client.stopPodSandbox(sandboxId);
        await client.removePodSandbox(sandboxId);
      } catch (error) {
        pod.error = (error as Error).message;
      }
      deleted.push(pod);
      onPod(pod);
    }
    return deleted;
  } finally {
    client.close();
  }
}

/** Nearest-rank percentile of a list of milliseconds. */
export function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] ?? null;
}
