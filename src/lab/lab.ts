// The embedded lab node's life: up (containerd + CNI + pause image), status, and down (everything removed).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CriClient } from '../cri/client.js';
import { rfc3339Nanos } from '../time.js';
import { cleanupHost, type Progress } from './cleanup.js';
import {
  type ConflistFacts,
  checkConflist,
  cniBinDir,
  containerdConfig,
  defaultConflist,
  defaultSubnet,
  labBridge,
  parseSubnet,
  pauseImageRef,
  type Subnet,
  subnetsOverlap,
} from './config.js';
import {
  daemonLogTail,
  readDaemonRecord,
  runningDaemon,
  startDaemon,
  stopDaemon,
} from './containerd.js';
import { command, linkExists, routes } from './host.js';
import { buildPauseImage } from './image.js';
import type { LabPaths } from './paths.js';
import { type LabRecord, readLabRecord, rememberNetns, writeLabRecord } from './record.js';

export const labCgroupParent = '/podwire-lab';
/** How long `lab down` gives a pod's containers between SIGTERM and SIGKILL (Kubernetes' default grace). */
const labGraceSeconds = 30;
const readyTimeoutMs = 30_000;

export interface UpOptions {
  cniConfig?: string;
  containerd?: string;
  subnet?: string;
}

export class LabError extends Error {}

/** `ctr` on the lab's containerd, in the namespace CRI uses (k8s.io); resolves with what it printed. */
export function labCtr(paths: LabPaths, ...args: string[]): Promise<string> {
  return command('ctr', ['--address', paths.socket, '--namespace', 'k8s.io', ...args]);
}

/**
 * Stops a pod's running containers as the kubelet does: SIGTERM, then SIGKILL after `graceSeconds`. StopPodSandbox
 * alone kills them at once. Resolves with each container's name and how long its stop took.
 */
export async function stopContainers(
  client: CriClient,
  podSandboxId: string,
  graceSeconds: number,
): Promise<{ name: string; seconds: number }[]> {
  const stopped: { name: string; seconds: number }[] = [];
  const containers = await client.listContainers({ podSandboxId });
  for (const container of containers.filter((c) => c.state === 'CONTAINER_RUNNING')) {
    const started = Date.now();
    await client.stopContainer(container.id, graceSeconds, {
      timeoutMs: (graceSeconds + 30) * 1000,
    });
    stopped.push({ name: container.metadata.name, seconds: (Date.now() - started) / 1000 });
  }
  return stopped;
}

export function criEndpoint(paths: LabPaths): string {
  return `unix://${paths.socket}`;
}

/** Refuses a subnet that any route of the machine already covers: pods would shadow real addresses. */
async function checkSubnetFree(subnets: string[]): Promise<void> {
  const hostRoutes = await routes();
  for (const text of subnets) {
    const subnet = parseSubnet(text);
    if (typeof subnet === 'string') continue;
    for (const route of hostRoutes) {
      if (route.dst === 'default' || route.dev === labBridge) continue;
      const routed = parseSubnet(route.dst.includes('/') ? route.dst : `${route.dst}/32`);
      if (typeof routed !== 'string' && subnetsOverlap(subnet, routed)) {
        throw new LabError(
          `subnet ${text} overlaps the machine's route to ${route.dst}${route.dev ? ` (dev ${route.dev})` : ''}: pick another with --subnet`,
        );
      }
    }
  }
}

interface NetworkPlan {
  conflist: string;
  source: string;
  facts: ConflistFacts;
}

/** The network list the lab will run, checked before anything starts. */
function planNetwork(options: UpOptions, paths: LabPaths): NetworkPlan {
  if (options.cniConfig !== undefined && options.subnet !== undefined) {
    throw new LabError(
      '--subnet applies to the default network only: put the subnet in your --cni-config instead',
    );
  }
  if (options.cniConfig !== undefined) {
    let text: string;
    try {
      text = readFileSync(options.cniConfig, 'utf8');
    } catch (error) {
      throw new LabError(
        `cannot read --cni-config ${options.cniConfig}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      );
    }
    const facts = checkConflist(text, options.cniConfig, cniBinDir);
    if (typeof facts === 'string') throw new LabError(facts);
    return { conflist: text, source: options.cniConfig, facts };
  }
  const subnet: Subnet | string = parseSubnet(options.subnet ?? defaultSubnet);
  if (typeof subnet === 'string') throw new LabError(subnet);
  const conflist = defaultConflist(subnet, paths);
  const facts = checkConflist(conflist, 'the default network', cniBinDir);
  if (typeof facts === 'string') throw new LabError(facts);
  return { conflist, source: 'default', facts };
}

/** Directories the runtime creates outside the lab's own when they are missing; `down` removes them if still empty. */
const runtimeDirs = [
  '/run/containerd',
  '/run/containerd/s',
  '/run/containerd/fifo',
  '/var/run/netns',
];

async function waitForCri(paths: LabPaths): Promise<CriClient> {
  const client = CriClient.connect(criEndpoint(paths), { timeoutMs: 5_000 });
  try {
    await client.waitReady(readyTimeoutMs);
    return client;
  } catch (error) {
    client.close();
    throw new LabError(
      `containerd did not answer CRI Version within ${readyTimeoutMs / 1000} s (${(error as Error).message}); its log says:\n${daemonLogTail(paths)}`,
    );
  }
}

export async function labUp(
  paths: LabPaths,
  options: UpOptions,
  progress: Progress,
): Promise<'started' | 'already-up'> {
  const running = runningDaemon(paths);
  if (running) {
    progress(
      `the lab is already up (containerd pid ${running.pid}, ${criEndpoint(paths)}): nothing changed; run podwire lab down first to use other settings`,
    );
    return 'already-up';
  }
  const plan = planNetwork(options, paths);
  const containerd = options.containerd ?? '/usr/bin/containerd';
  if (!existsSync(containerd)) {
    throw new LabError(
      `containerd binary ${containerd} not found: apt-get install containerd, or pass --containerd PATH`,
    );
  }
  await checkSubnetFree(plan.facts.subnets);

  if (readLabRecord(paths) || readDaemonRecord(paths) || existsSync(paths.state)) {
    progress('a previous lab was not shut down cleanly: cleaning it up first');
    await labDown(paths, progress);
  }

  const record: LabRecord = {
    version: 1,
    createdAt: new Date().toISOString(),
    containerdBinary: containerd,
    cniConfigSource: plan.source,
    // Only the lease dirs that do not exist yet are the lab's to remove.
    network: { ...plan.facts, ipamDirs: plan.facts.ipamDirs.filter((dir) => !existsSync(dir)) },
    bridgesCreated: [],
    dirsCreated: runtimeDirs.filter((dir) => !existsSync(dir)),
    cgroupParent: labCgroupParent,
    netnsPaths: [],
  };
  for (const bridge of plan.facts.bridges) {
    if (!(await linkExists(bridge))) record.bridgesCreated.push(bridge);
  }
  for (const dir of [paths.state, paths.root, paths.cniConfDir, paths.podLogDir, paths.imageDir]) {
    mkdirSync(dir, { recursive: true });
  }
  // The record goes first: whatever fails from here on, `lab down` knows what to remove.
  writeLabRecord(paths, record);

  try {
    writeFileSync(join(paths.cniConfDir, '10-podwire-lab.conflist'), plan.conflist);
    writeFileSync(
      paths.containerdConfig,
      containerdConfig({
        paths,
        sandboxImage: pauseImageRef,
        cniBinDir,
        runcBinary: '/usr/sbin/runc',
      }),
    );
    progress('building the pause image from src/lab/pause.c');
    const image = await buildPauseImage({ reference: pauseImageRef, workDir: paths.imageDir });
    const tarPath = join(paths.imageDir, 'pause.oci.tar');
    writeFileSync(tarPath, image.tar);

    progress(`starting ${containerd} (config ${paths.containerdConfig})`);
    const daemon = startDaemon(paths, containerd);
    const client = await waitForCri(paths);
    try {
      progress(`importing ${pauseImageRef}`);
      await labCtr(paths, 'images', 'import', tarPath);
      const version = await client.version();
      progress(
        `lab up: containerd ${version.runtimeVersion} pid ${daemon.pid}, CRI at ${criEndpoint(paths)}, network ${plan.facts.name} (${plan.facts.pluginTypes.join(', ')}${plan.facts.subnets.length > 0 ? ` on ${plan.facts.subnets.join(', ')}` : ''})`,
      );
    } finally {
      client.close();
    }
    return 'started';
  } catch (error) {
    progress(`lab up failed; removing what it made`);
    await labDown(paths, () => undefined);
    throw error;
  }
}

/**
 * Starts the lab's containerd again, the pods staying as the runtime left them: after it was killed, or with
 * another binary (`containerd`: a path, kept for `lab down`), as a node's runtime is upgraded in place.
 */
export async function labRestart(
  paths: LabPaths,
  containerd: string | undefined,
  progress: Progress,
): Promise<void> {
  const record = readLabRecord(paths);
  if (!record) throw new LabError('the lab is not up: run podwire lab up first');
  const running = runningDaemon(paths);
  if (running) {
    progress(`stopping containerd pid ${running.pid}`);
    await stopDaemon(paths);
  }
  const binary = containerd ?? record.containerdBinary;
  if (binary !== record.containerdBinary)
    writeLabRecord(paths, { ...record, containerdBinary: binary });
  progress(`starting ${binary} (config ${paths.containerdConfig})`);
  const daemon = startDaemon(paths, binary);
  const client = await waitForCri(paths);
  try {
    const version = await client.version();
    progress(
      `lab restarted: containerd ${version.runtimeVersion} pid ${daemon.pid}, CRI at ${criEndpoint(paths)}`,
    );
  } finally {
    client.close();
  }
}

async function removeAllSandboxes(
  client: CriClient,
  paths: LabPaths,
  progress: Progress,
): Promise<void> {
  const sandboxes = await client.listPodSandbox();
  for (const sandbox of sandboxes) {
    const netns = await sandboxNetns(client, sandbox.id).catch(() => null);
    if (netns) rememberNetns(paths, [netns]);
    // A pod's containers first get SIGTERM and a grace period (the DaemonSet's podwire removes its probes then).
    await stopContainers(client, sandbox.id, labGraceSeconds);
    await client.stopPodSandbox(sandbox.id);
    await client.removePodSandbox(sandbox.id);
    progress(
      `removed pod ${sandbox.metadata?.namespace}/${sandbox.metadata?.name} (${sandbox.id.slice(0, 13)})`,
    );
  }
}

/**
 * Stops and removes everything the lab made. After a crash (containerd killed, stale pid file) it
 * starts the lab's containerd once more so that the runtime itself tears the pods down, then removes
 * what is left by hand.
 */
export async function labDown(paths: LabPaths, progress: Progress): Promise<void> {
  const record = readLabRecord(paths);
  if (!record && !existsSync(paths.state) && !existsSync(paths.root)) {
    progress('the lab is not up: nothing to remove');
    return;
  }
  let daemon = runningDaemon(paths);
  if (!daemon && record && existsSync(paths.containerdConfig)) {
    progress('containerd is not running: starting it once so that it removes its pods');
    try {
      daemon = startDaemon(paths, record.containerdBinary);
    } catch (error) {
      progress(`could not restart containerd (${(error as Error).message}); removing by hand`);
    }
  }
  if (daemon) {
    let client: CriClient | null = null;
    try {
      client = await waitForCri(paths);
      await removeAllSandboxes(client, paths, progress);
    } catch (error) {
      progress(`could not remove pods through CRI (${(error as Error).message}); removing by hand`);
    } finally {
      client?.close();
    }
    await stopDaemon(paths);
    progress(`stopped containerd pid ${daemon.pid}`);
  }
  await cleanupHost(paths, readLabRecord(paths) ?? record, progress);
  progress('lab down: nothing of the lab is left');
}

/** The network namespace a sandbox's runtime spec names; containerd reports it only in verbose status. */
export async function sandboxNetns(client: CriClient, sandboxId: string): Promise<string | null> {
  const { info } = await client.podSandboxStatus(sandboxId, { verbose: true });
  const raw = info.info;
  if (raw === undefined) return null;
  try {
    const parsed = JSON.parse(raw) as {
      runtimeSpec?: { linux?: { namespaces?: { type: string; path?: string }[] } };
    };
    const network = parsed.runtimeSpec?.linux?.namespaces?.find((ns) => ns.type === 'network');
    return network?.path ?? null;
  } catch {
    return null;
  }
}

export interface LabPodStatus {
  id: string;
  name: string;
  namespace: string;
  uid: string;
  attempt: number;
  state: string;
  ip: string | null;
  netns: string | null;
  createdAt: string | null;
  /** Why the runtime could not report this pod's status, when it could not. */
  error?: string;
}

export interface LabStatus {
  running: boolean;
  pid: number | null;
  criEndpoint: string;
  containerdBinary: string | null;
  containerdVersion: string | null;
  runtimeApiVersion: string | null;
  cniConfDir: string;
  cniBinDir: string;
  cniConfigSource: string | null;
  network: string | null;
  bridges: string[];
  subnets: string[];
  pods: LabPodStatus[];
}

export async function labStatus(paths: LabPaths): Promise<LabStatus> {
  const daemon = runningDaemon(paths);
  const record = readLabRecord(paths);
  const status: LabStatus = {
    running: daemon !== null,
    pid: daemon?.pid ?? null,
    criEndpoint: criEndpoint(paths),
    containerdBinary: record?.containerdBinary ?? null,
    containerdVersion: null,
    runtimeApiVersion: null,
    cniConfDir: paths.cniConfDir,
    cniBinDir,
    cniConfigSource: record?.cniConfigSource ?? null,
    network: record?.network.name ?? null,
    bridges: record?.network.bridges ?? [],
    subnets: record?.network.subnets ?? [],
    pods: [],
  };
  if (!daemon) return status;
  const client = CriClient.connect(criEndpoint(paths), { timeoutMs: 10_000 });
  try {
    const version = await client.version();
    status.containerdVersion = version.runtimeVersion;
    status.runtimeApiVersion = version.runtimeApiVersion;
    for (const sandbox of await client.listPodSandbox()) {
      // One pod whose status the runtime cannot give (a half-removed sandbox) must not hide the others.
      const pod = await client
        .podSandboxStatus(sandbox.id)
        .then((answer) => answer.status)
        .catch((error: Error) => ({ ...sandbox, network: undefined, statusError: error.message }));
      status.pods.push({
        id: sandbox.id,
        name: pod.metadata?.name ?? '',
        namespace: pod.metadata?.namespace ?? '',
        uid: pod.metadata?.uid ?? '',
        attempt: pod.metadata?.attempt ?? 0,
        state: pod.state,
        ip: pod.network?.ip || null,
        netns: await sandboxNetns(client, sandbox.id).catch(() => null),
        createdAt: pod.createdAt ? rfc3339Nanos(pod.createdAt) : null,
        ...('statusError' in pod ? { error: pod.statusError } : {}),
      });
    }
  } finally {
    client.close();
  }
  status.pods.sort((a, b) => (a.createdAt ?? '').localeCompare(b.createdAt ?? ''));
  return status;
}
