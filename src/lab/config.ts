// The lab node's configuration: containerd's TOML and the CNI network list, made or checked before anything starts.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { LabPaths } from './paths.js';

export const labBridge = 'pwlab0';
export const labNetworkName = 'podwire-lab';
export const defaultSubnet = '10.244.77.0/24';
export const pauseImageRef = 'localhost/podwire/pause:lab';
export const cniBinDir = '/usr/lib/cni';

/** A TOML basic string: containerd's parser wants the same escapes as JSON for quotes and backslashes. */
function tomlString(value: string): string {
  return JSON.stringify(value);
}

export interface ContainerdConfigOptions {
  paths: LabPaths;
  sandboxImage: string;
  cniBinDir: string;
  runcBinary: string;
}

/**
 * containerd 1.6 config (version 2; 2.x migrates it). Everything the daemon writes lives under the lab's
 * own root and state; the plugins that would reach outside them (opt, other snapshotters) are off.
 */
export function containerdConfig(o: ContainerdConfigOptions): string {
  const p = o.paths;
  const cri = '[plugins."io.containerd.grpc.v1.cri"]';
  return `# Written by podwire lab up: the lab's private containerd. Never the machine's own.
version = 2
root = ${tomlString(p.containerdRoot)}
state = ${tomlString(p.containerdState)}
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = ${tomlString(p.socket)}

[ttrpc]
  address = ${tomlString(`${p.socket}.ttrpc`)}

[debug]
  level = "info"

[metrics]
  address = ""

${cri}
  sandbox_image = ${tomlString(o.sandboxImage)}
  # This sandbox cannot lower oom_score_adj; without this every RunPodSandbox fails in runc create.
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_tls_streaming = false

${cri.slice(0, -1)}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

${cri.slice(0, -1)}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

${cri.slice(0, -1)}.containerd.runtimes.runc.options]
  BinaryName = ${tomlString(o.runcBinary)}
  Root = ${tomlString(p.runcRoot)}
  SystemdCgroup = false

${cri.slice(0, -1)}.cni]
  bin_dir = ${tomlString(o.cniBinDir)}
  conf_dir = ${tomlString(p.cniConfDir)}
  max_conf_num = 1
`;
}

export interface Subnet {
  network: number;
  prefix: number;
  text: string;
}

function parseIPv4(text: string): number | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) return null;
    const octet = Number(part);
    if (octet > 255) return null;
    value = value * 256 + octet;
  }
  return value;
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parses an IPv4 CIDR; an address with host bits set is refused, since host-local would reject it later. */
export function parseSubnet(text: string): Subnet | string {
  const [address, prefixText, ...rest] = text.split('/');
  const network = parseIPv4(address ?? '');
  const prefix = Number(prefixText);
  if (rest.length > 0 || network === null || !/^\d{1,2}$/.test(prefixText ?? '') || prefix > 30) {
    return `--subnet ${text} is not an IPv4 CIDR with a prefix of at most /30 (e.g. ${defaultSubnet})`;
  }
  if ((network & ~maskOf(prefix)) >>> 0 !== 0) {
    return `--subnet ${text} has host bits set: use the network address`;
  }
  return { network, prefix, text };
}

export function subnetsOverlap(a: Subnet, b: Subnet): boolean {
  const mask = maskOf(Math.min(a.prefix, b.prefix));
  return (a.network & mask) >>> 0 === (b.network & mask) >>> 0;
}

/** The default network list: the bridge plugin on the lab's bridge as the pods' gateway, host-local IPAM. */
export function defaultConflist(subnet: Subnet, paths: LabPaths): string {
  const conflist = {
    cniVersion: '1.0.0',
    name: labNetworkName,
    plugins: [
      {
        type: 'bridge',
        bridge: labBridge,
        isGateway: true,
        // No masquerading: the lab never touches the machine's firewall.
        ipMasq: false,
        hairpinMode: false,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: subnet.text }]],
          routes: [{ dst: '0.0.0.0/0' }],
          dataDir: paths.ipamDataDir,
        },
      },
    ],
  };
  return `${JSON.stringify(conflist, null, 2)}\n`;
}

/** What the lab needs to know of a network list to run it and to clean up after it. */
export interface ConflistFacts {
  name: string;
  pluginTypes: string[];
  /** Bridges the list's bridge plugins create (the plugin's default is cni0). */
  bridges: string[];
  /** host-local lease directories, one per network. */
  ipamDirs: string[];
  subnets: string[];
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function collectIpam(ipam: Json, network: string, facts: ConflistFacts): void {
  if (ipam.type === 'host-local') {
    const dataDir = typeof ipam.dataDir === 'string' ? ipam.dataDir : '/var/lib/cni/networks';
    facts.ipamDirs.push(join(dataDir, network));
  }
  if (typeof ipam.subnet === 'string') facts.subnets.push(ipam.subnet);
  if (Array.isArray(ipam.ranges)) {
    for (const set of ipam.ranges) {
      if (!Array.isArray(set)) continue;
      for (const range of set) {
        if (isObject(range) && typeof range.subnet === 'string') facts.subnets.push(range.subnet);
      }
    }
  }
}

/**
 * Checks a CNI network list before the lab starts: valid JSON, a name, a cniVersion, plugins that
 * exist in the bin dir. Returns the facts, or one line saying what is wrong and how to fix it.
 */
export function checkConflist(
  text: string,
  source: string,
  binDir: string,
): ConflistFacts | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return `${source} is not valid JSON (${(error as Error).message}): fix it or leave out --cni-config`;
  }
  if (!isObject(parsed))
    return `${source} is not a JSON object: a CNI network list is {"name", "cniVersion", "plugins": [...]}`;
  if (typeof parsed.name !== 'string' || parsed.name === '') {
    return `${source} has no "name": a CNI network list needs one`;
  }
  if (typeof parsed.cniVersion !== 'string') {
    return `${source} has no "cniVersion": add one, e.g. "1.0.0"`;
  }
  if (!Array.isArray(parsed.plugins) || parsed.plugins.length === 0) {
    return `${source} has no "plugins" list: a .conflist needs at least one plugin (a single-plugin .conf is not accepted)`;
  }
  const facts: ConflistFacts = {
    name: parsed.name,
    pluginTypes: [],
    bridges: [],
    ipamDirs: [],
    subnets: [],
  };
  for (const [index, plugin] of parsed.plugins.entries()) {
    if (!isObject(plugin) || typeof plugin.type !== 'string' || plugin.type === '') {
      return `${source}: plugins[${index}] has no "type"`;
    }
    const binaries = [plugin.type];
    if (isObject(plugin.ipam) && typeof plugin.ipam.type === 'string')
      binaries.push(plugin.ipam.type);
    for (const binary of binaries) {
      if (binary.includes('/') || !existsSync(join(binDir, binary))) {
        return `${source}: plugin "${binary}" is not in ${binDir}: use a reference plugin (apt-get install containernetworking-plugins)`;
      }
    }
    facts.pluginTypes.push(plugin.type);
    if (plugin.type === 'bridge') {
      facts.bridges.push(typeof plugin.bridge === 'string' ? plugin.bridge : 'cni0');
    }
    if (isObject(plugin.ipam)) collectIpam(plugin.ipam, parsed.name, facts);
  }
  return facts;
}
