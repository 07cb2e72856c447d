// What a user looks at on the node to check the lab: the podwire CLI, `ip`, /proc and the lab's dirs.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runningDaemon } from '../../src/lab/containerd.js';
import { labPaths } from '../../src/lab/paths.js';

const run = promisify(execFile);

export const isRoot = process.getuid?.() === 0;
export const rootReason =
  'needs root: the lab starts containerd and creates namespaces; run npm test as root';
export const labRoot = '/var/lib/podwire-lab';
export const labState = '/run/podwire-lab';
export const bridge = 'pwlab0';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI (npm test builds it first) as a user would. */
export async function podwire(...args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run('node', ['dist/src/cli.js', ...args], {
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return {
      code: typeof e.code === 'number' ? e.code : 1,
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? '',
    };
  }
}

export async function ip(...args: string[]): Promise<unknown> {
  const { stdout } = await run('ip', ['-j', ...args]);
  return stdout.trim() === '' ? [] : JSON.parse(stdout);
}

export interface IpLink {
  ifname: string;
  ifindex: number;
  master?: string;
  link_index?: number;
  link_netnsid?: number;
  linkinfo?: { info_kind?: string };
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

export async function hostLinks(): Promise<IpLink[]> {
  return (await ip('-d', 'link', 'show')) as IpLink[];
}

export function netnsPins(): string[] {
  return existsSync('/var/run/netns') ? readdirSync('/var/run/netns').sort() : [];
}

export function mountPoints(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split(' ')[4] ?? '');
}

/** Whether `pid` still runs (a zombie waiting for its reaper counts as ended). */
export function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Processes whose command line mentions the lab's state dir: its containerd (config) and its shims (socket). */
export function labProcesses(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const exited = stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
      if (!exited && argv.includes(labState)) pids.push(Number(entry));
    } catch {
      // Gone while we looked.
    }
  }
  return pids;
}

/**
 * Before a lab test: refuses a lab that is up (someone's, or another test run's: the test would take it down), and
 * removes one a crash left behind (its containerd is gone, its state dir is not), as `podwire lab down` does for a user.
 */
export async function noLabUp(): Promise<void> {
  const daemon = runningDaemon(labPaths());
  if (daemon)
    throw new Error(
      `a lab is up (containerd pid ${daemon.pid}, ${labState}): run podwire lab down first`,
    );
  if (!existsSync(labState) && !existsSync(labRoot)) return;
  const down = await podwire('lab', 'down');
  if (down.code !== 0)
    throw new Error(`a lab left behind by a crash could not be removed: ${down.stderr.trim()}`);
}

/** What the machine holds that a lab could leave behind; compared before and after. */
export async function machineSnapshot() {
  const links = await hostLinks();
  return {
    netnsPins: netnsPins(),
    links: links.map((link) => link.ifname).sort(),
    labMounts: mountPoints().filter(
      (point) =>
        point.startsWith(labRoot) || point.startsWith(labState) || point.startsWith('/run/netns'),
    ),
    labProcesses: labProcesses(),
    labDirs: [labRoot, labState].filter((dir) => existsSync(dir)),
    // The runtime makes these on the lab's behalf when the machine has none.
    runtimeDirs: ['/run/containerd', '/run/netns'].filter((dir) => existsSync(dir)),
    // podwire trace's live view socket directory (src/attach), removed at its stop or by its janitor.
    attachDirs: ['/run/podwire'].filter((dir) => existsSync(dir)),
  };
}

export interface LabStatusJson {
  running: boolean;
  pid: number | null;
  criEndpoint: string;
  containerdVersion: string | null;
  cniConfDir: string;
  cniBinDir: string;
  bridges: string[];
  subnets: string[];
  pods: {
    id: string;
    name: string;
    namespace: string;
    uid: string;
    state: string;
    ip: string | null;
    netns: string | null;
  }[];
}

export async function labStatus(): Promise<LabStatusJson> {
  const result = await podwire('lab', 'status', '--json');
  if (result.code !== 0) throw new Error(`podwire lab status failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as LabStatusJson;
}

export function ipv4InSubnet(address: string, cidr: string): boolean {
  const toNumber = (text: string) =>
    text.split('.').reduce((value, octet) => value * 256 + Number(octet), 0);
  const [network, prefix] = cidr.split('/');
  const size = 2 ** (32 - Number(prefix));
  const base = toNumber(network ?? '');
  const value = toNumber(address);
  return value > base && value < base + size - 1;
}

/**
 * `lab up` with a host-local range of two addresses (test/lab/fixtures/tiny-range.conflist), its leases in
 * `scratch`: the third pod cannot get an address.
 */
export async function labUpWithTinyRange(scratch: string): Promise<CliResult> {
  const config = JSON.parse(readFileSync('test/lab/fixtures/tiny-range.conflist', 'utf8')) as {
    plugins: { ipam: { dataDir: string } }[];
  };
  for (const plugin of config.plugins) plugin.ipam.dataDir = join(scratch, 'ipam');
  const file = join(scratch, 'tiny.conflist');
  writeFileSync(file, JSON.stringify(config));
  return podwire('lab', 'up', '--cni-config', file);
}

/** A loopback TCP port nothing listens on right now (for a receiver or a metrics endpoint of a test's own). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
