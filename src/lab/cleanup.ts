// Removes what the lab made on the host, also after a crash: shims, netns pins, veths, bridge, mounts, cgroups, dirs.
import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  command,
  findProcesses,
  links,
  mounts,
  netnsIds,
  processStartTime,
  stopProcess,
} from './host.js';
import type { LabPaths } from './paths.js';
import type { LabRecord } from './record.js';

export type Progress = (line: string) => void;

/** A lab shim names the lab's socket in `-address`: no other process on the machine does. */
export function labShimPids(paths: LabPaths): number[] {
  return findProcesses((argv) => {
    const at = argv.indexOf('-address');
    return at >= 0 && argv[at + 1] === paths.socket;
  });
}

/** Shim sockets live outside the lab's dirs (/run/containerd/s/...); each task's bundle says where. */
function shimSocketPaths(paths: LabPaths): string[] {
  const taskRoot = join(paths.containerdState, 'io.containerd.runtime.v2.task');
  const sockets: string[] = [];
  if (!existsSync(taskRoot)) return sockets;
  for (const namespace of readdirSync(taskRoot)) {
    for (const id of readdirSync(join(taskRoot, namespace))) {
      try {
        const address = readFileSync(join(taskRoot, namespace, id, 'address'), 'utf8').trim();
        if (address.startsWith('unix://')) sockets.push(address.slice('unix://'.length));
      } catch {
        // A bundle without an address never got a shim.
      }
    }
  }
  return sockets;
}

/** Containers that outlived containerd: runc removes them (processes and cgroups) from the lab's own runc root. */
async function deleteOrphanContainers(paths: LabPaths, progress: Progress): Promise<void> {
  if (!existsSync(paths.runcRoot)) return;
  for (const namespace of readdirSync(paths.runcRoot)) {
    const root = join(paths.runcRoot, namespace);
    for (const id of readdirSync(root)) {
      try {
        await command('runc', ['--root', root, 'delete', '--force', id]);
        progress(`deleted orphan container ${id.slice(0, 13)}`);
      } catch (error) {
        progress(`could not delete container ${id.slice(0, 13)}: ${(error as Error).message}`);
      }
    }
  }
}

async function stopShims(paths: LabPaths, progress: Progress): Promise<void> {
  for (const pid of labShimPids(paths)) {
    const start = processStartTime(pid);
    if (start === null) continue;
    await stopProcess(pid, start, 2_000);
    progress(`stopped shim pid ${pid}`);
  }
}

async function unmountNetns(netnsPath: string, progress: Progress): Promise<void> {
  if (!existsSync(netnsPath)) return;
  try {
    await command('umount', [netnsPath]);
  } catch {
    // Not mounted any more: only the file is left.
  }
  rmSync(netnsPath, { force: true });
  progress(`removed netns pin ${netnsPath}`);
}

/** The pins whose namespace holds the peer of a veth on the lab's bridges: found even when lab.json missed them. */
async function netnsOnBridges(bridges: string[]): Promise<string[]> {
  const ids = await netnsIds();
  const found: string[] = [];
  for (const bridge of bridges) {
    for (const link of await links(['master', bridge]).catch(() => [])) {
      const name = link.link_netnsid === undefined ? undefined : ids.get(link.link_netnsid);
      if (name) found.push(join('/var/run/netns', name));
    }
  }
  return found;
}

async function removeLinks(record: LabRecord, progress: Progress): Promise<void> {
  for (const bridge of record.bridgesCreated) {
    for (const link of await links(['master', bridge]).catch(() => [])) {
      await command('ip', ['link', 'del', 'dev', link.ifname]).catch(() => undefined);
      progress(`deleted veth ${link.ifname}`);
    }
    if ((await links(['dev', bridge]).catch(() => [])).length > 0) {
      await command('ip', ['link', 'del', 'dev', bridge]);
      progress(`deleted bridge ${bridge}`);
    }
  }
}

/** Unmounts everything below the lab's dirs, deepest first (overlay rootfs, shm, netns pins under the state dir). */
async function unmountBelow(dirs: string[], progress: Progress): Promise<void> {
  const inside = mounts()
    .map((m) => m.mountPoint)
    .filter((point) => dirs.some((dir) => point === dir || point.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const point of inside) {
    await command('umount', ['-l', point]).catch(() => undefined);
  }
  if (inside.length > 0) progress(`unmounted ${inside.length} mounts under the lab's dirs`);
}

/**
 * Removes the lab's cgroup tree in every hierarchy, leaves first; a cgroup still holding a process stays and is
 * reported.
 */
function removeCgroups(cgroupParent: string, progress: Progress): void {
  const hierarchies = mounts().filter((m) => m.fsType === 'cgroup' || m.fsType === 'cgroup2');
  let left = 0;
  const removeTree = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) removeTree(join(dir, entry.name));
    }
    try {
      rmdirSync(dir);
    } catch {
      left++;
    }
  };
  for (const hierarchy of hierarchies) {
    const top = join(hierarchy.mountPoint, cgroupParent);
    if (existsSync(top)) removeTree(top);
  }
  if (left > 0) progress(`${left} lab cgroups still hold processes and were left`);
}

function removeEmptyDir(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // Not empty (someone else uses it too) or already gone: leave it.
  }
}

/**
 * Everything after containerd is stopped. Safe to run more than once and on a half-made lab: each
 * step removes only what is there and belongs to the lab.
 */
export async function cleanupHost(
  paths: LabPaths,
  record: LabRecord | null,
  progress: Progress,
): Promise<void> {
  const sockets = shimSocketPaths(paths);
  await deleteOrphanContainers(paths, progress);
  await stopShims(paths, progress);
  for (const socket of sockets) rmSync(socket, { force: true });

  const bridges = record?.bridgesCreated ?? [];
  const pins = new Set([...(record?.netnsPaths ?? []), ...(await netnsOnBridges(bridges))]);
  for (const pin of pins) await unmountNetns(pin, progress);
  if (record) await removeLinks(record, progress);

  await unmountBelow([paths.state, paths.root], progress);
  if (record) removeCgroups(record.cgroupParent, progress);

  for (const dir of record?.network.ipamDirs ?? []) rmSync(dir, { recursive: true, force: true });
  rmSync(paths.root, { recursive: true, force: true });
  rmSync(paths.state, { recursive: true, force: true });
  // Made by the runtime on the lab's behalf (shim socket dir, netns dir) when the machine had none: deepest first.
  // containerd and `ip netns add` turn the netns dir into a shared bind mount of itself; that goes too.
  const mountPoints = new Set(mounts().map((m) => m.mountPoint));
  for (const dir of [...(record?.dirsCreated ?? [])].sort((a, b) => b.length - a.length)) {
    const real = dir.replace(/^\/var\/run\//, '/run/');
    if (mountPoints.has(real) && readdirSync(real).length === 0) {
      await command('umount', [real]).catch(() => undefined);
    }
    removeEmptyDir(dir);
  }
}
