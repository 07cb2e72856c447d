// Where the lab keeps everything it makes, so that `lab down` knows exactly what to remove.
import { join } from 'node:path';

export interface LabPaths {
  /** Persistent data: containerd's root (images, snapshots), CNI config, IPAM leases, pod logs. */
  root: string;
  /** Runtime state: socket, pid file, containerd and runc state, the lab's record of itself. */
  state: string;
  containerdRoot: string;
  containerdState: string;
  containerdConfig: string;
  containerdLog: string;
  socket: string;
  pidFile: string;
  labRecord: string;
  runcRoot: string;
  cniConfDir: string;
  ipamDataDir: string;
  podLogDir: string;
  imageDir: string;
}

export const defaultLabRoot = '/var/lib/podwire-lab';
export const defaultLabState = '/run/podwire-lab';

/** The lab's directories; PODWIRE_LAB_ROOT and PODWIRE_LAB_STATE move them (tests, a second checkout). */
export function labPaths(
  root = process.env.PODWIRE_LAB_ROOT ?? defaultLabRoot,
  state = process.env.PODWIRE_LAB_STATE ?? defaultLabState,
): LabPaths {
  return {
    root,
    state,
    containerdRoot: join(root, 'containerd'),
    containerdState: join(state, 'containerd'),
    containerdConfig: join(state, 'containerd.toml'),
    containerdLog: join(state, 'containerd.log'),
    socket: join(state, 'containerd.sock'),
    pidFile: join(state, 'containerd.pid'),
    labRecord: join(state, 'lab.json'),
    runcRoot: join(state, 'runc'),
    cniConfDir: join(root, 'cni', 'net.d'),
    ipamDataDir: join(root, 'cni', 'ipam'),
    podLogDir: join(root, 'pods'),
    imageDir: join(root, 'image'),
  };
}
