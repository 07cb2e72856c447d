// `podwire lab daemonset up|logs|down`: the lab plays the kubelet for podwire's own DaemonSet. The pod template is
// read from the manifest and sent through CRI as the kubelet would send it (src/lab/pod-template.ts), so what runs
// on the lab is what the manifest says; the image comes from podwire's own build.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { CriClient, PodSandbox } from '../cri/client.js';
import { loadKustomization } from '../deploy/manifests.js';
import { installFile } from '../install.js';
import { command } from './host.js';
import { criEndpoint, LabError, labCgroupParent, labCtr, stopContainers } from './lab.js';
import type { LabPaths } from './paths.js';
import { criPod, type PodTemplate } from './pod-template.js';
import { daemonSetLabel, labClient } from './pods.js';
import { readLabRecord, writeLabRecord } from './record.js';

type Progress = (message: string) => void;

/** The DaemonSet as the lab needs it: from the manifest (src/deploy), never restated here. */
export interface DaemonSetSpec {
  name: string;
  namespace: string;
  template: PodTemplate;
  /** The pod's terminationGracePeriodSeconds (Kubernetes' default 30 when the manifest has none). */
  graceSeconds: number;
}

/**
 * The spec with these variables set in every container, as `kubectl set env` would (a variable the manifest has is
 * replaced, others are added): NAME=VALUE each.
 */
export function withEnv(spec: DaemonSetSpec, settings: string[]): DaemonSetSpec {
  const pairs = settings.map((setting) => {
    const equals = setting.indexOf('=');
    if (equals <= 0) throw new LabError(`--env ${setting}: give NAME=VALUE`);
    return { name: setting.slice(0, equals), value: setting.slice(equals + 1) };
  });
  const containers = spec.template.spec.containers.map((container) => {
    const env = (container.env ?? []).filter((e) => !pairs.some((p) => p.name === e.name));
    return { ...container, env: [...env, ...pairs] };
  });
  return { ...spec, template: { ...spec.template, spec: { ...spec.template.spec, containers } } };
}

/** The one DaemonSet of the kustomization at `dir`, as `kubectl apply -k` would create it. */
export function daemonSetFromManifest(dir: string): DaemonSetSpec {
  const found = loadKustomization(dir).filter((object) => object.kind === 'DaemonSet');
  const [daemonSet] = found;
  if (found.length !== 1 || !daemonSet)
    throw new LabError(`${dir} has ${found.length} DaemonSets: the lab runs exactly one`);
  const template = (daemonSet.spec as { template?: PodTemplate } | undefined)?.template;
  if (!template?.spec) throw new LabError(`${dir}: the DaemonSet has no spec.template.spec`);
  return {
    name: daemonSet.metadata.name,
    namespace: daemonSet.metadata.namespace ?? 'default',
    template,
    graceSeconds: template.spec.terminationGracePeriodSeconds ?? 30,
  };
}

/** The DaemonSet's pod on the lab, if it runs. */
export async function daemonSetPod(client: CriClient): Promise<PodSandbox | null> {
  const pods = await client.listPodSandbox({ labelSelector: { [daemonSetLabel]: 'true' } });
  return pods.find((pod) => pod.state === 'SANDBOX_READY') ?? pods[0] ?? null;
}

/** Directories outside the lab's own that the lab made for the pod: `lab down` removes them with the rest. */
function rememberDirs(paths: LabPaths, dirs: string[]): void {
  const record = readLabRecord(paths);
  if (!record) return;
  writeLabRecord(paths, { ...record, dirsCreated: [...new Set([...record.dirsCreated, ...dirs])] });
}

/**
 * The image's name as containerd's CRI resolves what a manifest says: `podwire:0.1.0` is
 * `docker.io/library/podwire:0.1.0`, as the kubelet would ask for it.
 */
export function normalizedImage(image: string): string {
  const [first, ...rest] = image.split('/');
  const hasRegistry =
    rest.length > 0 && (first?.includes('.') || first?.includes(':') || first === 'localhost');
  const path = hasRegistry ? rest.join('/') : image;
  const registry = hasRegistry ? (first as string) : 'docker.io';
  const withLibrary = registry === 'docker.io' && !path.includes('/') ? `library/${path}` : path;
  const tagged = /[:@][^/]*$/.test(withLibrary) ? withLibrary : `${withLibrary}:latest`;
  return `${registry}/${tagged}`;
}

/** Runs the DaemonSet's pod on the lab, as the kubelet of this node would. Resolves with its sandbox id. */
export async function daemonSetUp(
  paths: LabPaths,
  daemonSet: DaemonSetSpec,
  ensureImage: (image: string) => Promise<void>,
  progress: Progress,
): Promise<string> {
  const client = labClient(paths);
  try {
    const running = await daemonSetPod(client);
    if (running) {
      progress(
        `the DaemonSet's pod already runs (${running.metadata.namespace}/${running.metadata.name}, ${running.id.slice(0, 13)}): run podwire lab daemonset down first`,
      );
      return running.id;
    }
    const images = new Set(daemonSet.template.spec.containers.map((c) => c.image));
    for (const image of images) await ensureImage(image);

    const uid = randomUUID();
    const name = `${daemonSet.name}-lab`;
    const logDirectory = join(paths.podLogDir, `${daemonSet.namespace}_${name}_${uid}`);
    const pod = criPod(daemonSet.template, {
      name,
      namespace: daemonSet.namespace,
      uid,
      nodeName: hostname(),
      hostIp: '127.0.0.1',
      logDirectory,
      cgroupParent: `${labCgroupParent}/pod${uid}`,
      emptyDirRoot: join(paths.root, 'volumes', uid),
    });
    pod.sandbox.labels = { ...pod.sandbox.labels, [daemonSetLabel]: 'true' };
    mkdirSync(logDirectory, { recursive: true });
    const made: string[] = [];
    for (const { path } of pod.directories) {
      if (existsSync(path)) continue;
      mkdirSync(path, { recursive: true });
      if (!path.startsWith(paths.root)) made.push(path);
    }
    rememberDirs(paths, made);

    progress(`RunPodSandbox ${daemonSet.namespace}/${name} (${criEndpoint(paths)})`);
    const sandboxId = await client.runPodSandbox(pod.sandbox);
    for (const container of pod.containers) {
      const id = await client.createContainer(sandboxId, container, pod.sandbox);
      await client.startContainer(id);
      progress(
        `started container ${container.metadata.name} (${id.slice(0, 13)}, image ${container.image.image})`,
      );
    }
    return sandboxId;
  } finally {
    client.close();
  }
}

/**
 * What the DaemonSet's containers wrote, without the CRI log prefix (`<time> <stream> <P|F> `): partial lines (P)
 * are joined to the line they begin, as `kubectl logs` shows them.
 */
export function criLogContent(text: string): { stream: 'stdout' | 'stderr'; line: string }[] {
  const lines: { stream: 'stdout' | 'stderr'; line: string }[] = [];
  const partial = { stdout: '', stderr: '' };
  for (const entry of text.split('\n')) {
    const match = /^\S+ (stdout|stderr) ([PF]) (.*)$/.exec(entry);
    if (!match) continue;
    const stream = match[1] as 'stdout' | 'stderr';
    if (match[2] === 'P') {
      partial[stream] += match[3];
      continue;
    }
    lines.push({ stream, line: partial[stream] + match[3] });
    partial[stream] = '';
  }
  return lines;
}

/** The log files of the DaemonSet pod's containers, by container name. */
export async function daemonSetLogs(
  paths: LabPaths,
): Promise<{ container: string; text: string }[]> {
  const client = labClient(paths);
  try {
    const pod = await daemonSetPod(client);
    if (!pod)
      throw new LabError('no DaemonSet pod runs on the lab: run podwire lab daemonset up first');
    const logs: { container: string; text: string }[] = [];
    for (const container of await client.listContainers({ podSandboxId: pod.id })) {
      const { status } = await client.containerStatus(container.id);
      logs.push({
        container: container.metadata.name,
        text: existsSync(status.logPath) ? readFileSync(status.logPath, 'utf8') : '',
      });
    }
    return logs;
  } finally {
    client.close();
  }
}

/**
 * Stops the DaemonSet's pod as the kubelet does when the DaemonSet is deleted: each container gets SIGTERM and its
 * grace period, then the sandbox is stopped and removed.
 */
export async function daemonSetDown(
  paths: LabPaths,
  graceSeconds: number,
  progress: Progress,
): Promise<void> {
  const client = labClient(paths);
  try {
    const pod = await daemonSetPod(client);
    if (!pod) {
      progress('no DaemonSet pod runs on the lab: nothing to remove');
      return;
    }
    for (const { name, seconds } of await stopContainers(client, pod.id, graceSeconds))
      progress(`stopped container ${name} in ${seconds.toFixed(1)} s`);
    await client.stopPodSandbox(pod.id);
    await client.removePodSandbox(pod.id);
    const uid = pod.metadata.uid;
    rmSync(join(paths.root, 'volumes', uid), { recursive: true, force: true });
    progress(`removed ${pod.metadata.namespace}/${pod.metadata.name} (${pod.id.slice(0, 13)})`);
  } finally {
    client.close();
  }
}

/** scripts/build-image.sh of this checkout, found from this module under src/ and dist/src/. */
function buildScript(): string {
  const script = installFile('scripts/build-image.sh');
  if (script) return script;
  throw new LabError('cannot find scripts/build-image.sh: run podwire from its checkout');
}

/** Runs the build script, its progress lines passed on as they come (a cold build takes minutes). */
async function buildImage(progress: Progress): Promise<void> {
  const script = buildScript();
  const child = spawn('bash', [script], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = createInterface({ input: child.stderr as NodeJS.ReadableStream });
  const last: string[] = [];
  lines.on('line', (line) => {
    last.push(line);
    if (last.length > 20) last.shift();
    if (line.startsWith('build-image: ')) progress(line.slice('build-image: '.length));
  });
  const code = await new Promise<number>((resolve) =>
    child.on('close', (status) => resolve(status ?? 1)),
  );
  if (code !== 0)
    throw new LabError(
      `${script} failed (status ${code}): ${last.at(-1) ?? 'no output'}; run it by hand to see all`,
    );
}

/**
 * Makes the image the manifest names available to the lab's containerd, as a registry would for a kubelet:
 * built with scripts/build-image.sh (buildah) when the lab lacks it or `rebuild` asks, then imported.
 */
export async function ensureLabImage(
  paths: LabPaths,
  image: string,
  rebuild: boolean,
  progress: Progress,
): Promise<void> {
  if (!rebuild && (await labHasImage(paths, image))) return;
  progress(
    `building ${image} with scripts/build-image.sh (minutes the first time, then its layers are reused)`,
  );
  await buildImage(progress);
  const archive = join(paths.imageDir, 'daemonset.oci.tar');
  try {
    await command('buildah', [
      'push',
      '--quiet',
      image,
      `oci-archive:${archive}:${normalizedImage(image)}`,
    ]);
    progress(`importing ${image} into the lab's containerd`);
    await labCtr(paths, 'images', 'import', archive);
  } finally {
    rmSync(archive, { force: true });
  }
}

/** Whether the lab's containerd has the image, under the name CRI resolves. */
export async function labHasImage(paths: LabPaths, image: string): Promise<boolean> {
  const listed = await labCtr(paths, 'images', 'ls', '--quiet');
  return listed.split('\n').includes(normalizedImage(image));
}
