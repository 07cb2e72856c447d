// What a runtime and its CNI plugins always do for a pod, as data, so that a handshake's `deviations` name only what
// is unusual for this pod, never how its runtime always works (docs/records.md#deviations).
// Learnt from the lab's recordings (test/fixtures/recordings: containerd 1.6.20, 1.7.24 and 2.1.9 with bridge,
// host-local and loopback) and the runtimes' sources; a runtime or plugin not here is compared with the textbook.

/** A step as a handshake's phases name it (docs/records.md), with why the profile expects it or never sees it. */
interface Step {
  name: string;
  why: string;
}

/** How a runtime runs the network of a pod. */
export interface RuntimeProfile {
  runtime: string;
  /** The versions whose recordings showed this order. */
  seen: string;
  /** Whether the runtime runs the loopback plugin itself, and how. */
  loopback: { runs: 'beside the primary plugin' | 'before the primary plugin'; why: string };
  /** When the sandbox (pause) process starts, relative to the plugins' ADD. */
  sandbox: { starts: 'after the network' | 'before the network'; why: string };
  /** Whether the pod's namespace is pinned before any plugin runs. */
  netnsFirst: { yes: boolean; why: string };
  /** How this order differs from the textbook's, one line each: said once, in the `ready` status. */
  unlikeTextbook: string[];
}

/** What a primary CNI plugin does on ADD. */
export interface PluginProfile {
  plugin: string;
  /** Steps every ADD that does not fail has. */
  always: Step[];
  /** Steps its ADD never takes. */
  never: Step[];
  /** Whether it runs an IPAM plugin (`ipam <plugin>`). */
  ipam: { yes: boolean; why: string };
  unlikeTextbook: string[];
}

/**
 * The textbook: the pause container first, then the namespace's network, loopback and then the primary plugin in
 * series; the plugin makes a veth pair on the host, moves one end into the pod and renames it eth0.
 */
export const textbook: RuntimeProfile = {
  runtime: 'the textbook',
  seen: '',
  loopback: { runs: 'before the primary plugin', why: 'the textbook runs the networks in series' },
  sandbox: {
    starts: 'before the network',
    why: 'the textbook starts the pause container, then sets up its network',
  },
  netnsFirst: { yes: true, why: 'the plugins are given the pod namespace' },
  unlikeTextbook: [],
};

export const runtimeProfiles: Record<string, RuntimeProfile> = {
  containerd: {
    runtime: 'containerd',
    seen: '1.6.20, 1.7.24, 2.1.9',
    loopback: {
      runs: 'beside the primary plugin',
      why: 'go-cni starts every network of the pod at once, so either may exec first, overlap the other or not',
    },
    sandbox: {
      starts: 'after the network',
      why: 'RunPodSandbox sets up the network, waits for every plugin, then creates and starts the sandbox task',
    },
    netnsFirst: {
      yes: true,
      why: 'RunPodSandbox pins the namespace (cni-<uuid>) before CNI, and hands its path to the plugins',
    },
    unlikeTextbook: [
      'the sandbox starts after the network (the textbook starts it first)',
      'loopback runs beside the primary plugin (the textbook runs it first)',
    ],
  },
};

export const pluginProfiles: Record<string, PluginProfile> = {
  bridge: {
    plugin: 'bridge',
    always: [
      {
        name: 'veth create',
        why: 'bridge makes the pod a veth pair, one RTM_NEWLINK from inside the pod namespace',
      },
      { name: 'bridge attach', why: 'bridge sets the host end’s master to its bridge' },
    ],
    never: [
      {
        name: 'veth move',
        why: 'bridge creates the veth with its peer already in the pod netns',
      },
      { name: 'link rename', why: 'bridge names the pod interface at creation' },
    ],
    ipam: { yes: true, why: 'bridge delegates addresses to its IPAM plugin' },
    unlikeTextbook: [
      'the veth is created with its peer already in the pod netns (no veth move)',
      'the pod interface is named at creation (no link rename)',
    ],
  },
};

/** One top-level plugin ADD of a handshake, as far as its deviations need it. */
export interface ObservedPlugin {
  name: string;
  startNs: bigint;
  endNs: bigint | null;
  failed: boolean;
  /** The phase names of its rtnetlink requests, in order. */
  steps: string[];
  /** Whether it ran an IPAM plugin. */
  ranIpam: boolean;
}

export interface ObservedHandshake {
  runtime: string | null;
  /** Every plugin ADD the runtime ran for the pod, by start. */
  plugins: ObservedPlugin[];
  netnsCreateNs: bigint | null;
  sandboxStartNs: bigint | null;
}

/**
 * Where a handshake differs from its runtime's and primary plugin's normal order, one line each naming what was
 * expected: a normal step missing, an order the runtime never uses, a plugin run twice, no plugin at all. A runtime
 * or primary plugin without a profile is compared with the textbook, and one line says so.
 */
export function deviations(observed: ObservedHandshake): string[] {
  const out: string[] = [];
  const { plugins } = observed;
  if (plugins.length === 0) {
    out.push(
      'no CNI plugin was seen for this sandbox (host network, or plugins outside the CNI bin dirs podwire watches)',
    );
    return out;
  }
  const known = observed.runtime === null ? undefined : runtimeProfiles[observed.runtime];
  const runtime = known ?? textbook;
  const who = known ? known.runtime : 'the textbook';
  if (!known)
    out.push(
      `no profile of runtime ${observed.runtime ?? '(unknown)'}: its order compared with the textbook's`,
    );
  const primary = plugins.find((plugin) => plugin.name !== 'loopback') ?? null;
  const loopback = plugins.find((plugin) => plugin.name === 'loopback') ?? null;

  const runs = new Map<string, number>();
  for (const plugin of plugins) runs.set(plugin.name, (runs.get(plugin.name) ?? 0) + 1);
  for (const [name, count] of runs)
    if (count > 1) out.push(`cni ADD ${name} ran ${count} times: ${who} runs each plugin once`);

  let firstStart = plugins[0]?.startNs ?? 0n;
  for (const plugin of plugins) if (plugin.startNs < firstStart) firstStart = plugin.startNs;
  // Without a profile only what the textbook check always said is said (sandbox, loopback, veth).
  if (
    known?.netnsFirst.yes &&
    observed.netnsCreateNs !== null &&
    observed.netnsCreateNs > firstStart
  )
    out.push(`netns create after the first cni ADD began: ${who} pins the namespace before CNI`);
  if (known && observed.netnsCreateNs === null)
    out.push(`no netns create: ${who} pins the pod's namespace before CNI`);

  if (known && primary && !loopback)
    out.push(`no cni ADD loopback: ${who} runs it ${runtime.loopback.runs}`);
  if (
    primary &&
    loopback &&
    runtime.loopback.runs === 'before the primary plugin' &&
    loopback.startNs < (primary.endNs ?? primary.startNs) &&
    primary.startNs < (loopback.endNs ?? loopback.startNs)
  )
    out.push(`cni ADD loopback ran in parallel with cni ADD ${primary.name}`);

  if (observed.sandboxStartNs !== null) {
    const sandboxStart = observed.sandboxStartNs;
    if (runtime.sandbox.starts === 'after the network') {
      const before = plugins.find((p) => p.endNs === null || p.endNs > sandboxStart);
      if (before)
        out.push(
          `sandbox start began before cni ADD ${before.name} ended: ${who} starts the sandbox after the network`,
        );
    } else if (primary?.endNs && sandboxStart > primary.endNs) {
      out.push(`sandbox start after cni ADD ${primary.name}`);
    }
  }

  if (primary) out.push(...pluginDeviations(primary));
  return out;
}

/** The primary plugin's steps against its profile, or, without one, against the textbook's veth move and rename. */
function pluginDeviations(plugin: ObservedPlugin): string[] {
  const out: string[] = [];
  const steps = new Set(plugin.steps);
  const profile = pluginProfiles[plugin.name];
  if (!profile) {
    out.push(`no profile of plugin ${plugin.name}: its steps compared with the textbook's`);
    if (steps.has('veth create') && !steps.has('veth move'))
      out.push('veth created with its peer already in the pod netns: no veth move');
    if (steps.has('veth create') && !steps.has('link rename'))
      out.push('pod interface named at creation: no link rename');
    return out;
  }
  for (const step of profile.never)
    if (steps.has(step.name))
      out.push(`${step.name} in cni ADD ${plugin.name}: not expected (${step.why})`);
  // A plugin that failed stopped where it failed: the error says why, its missing steps are no news.
  if (plugin.failed) return out;
  for (const step of profile.always)
    if (!steps.has(step.name))
      out.push(`no ${step.name} in cni ADD ${plugin.name}: expected (${step.why})`);
  if (profile.ipam.yes && !plugin.ranIpam)
    out.push(`no IPAM plugin run by cni ADD ${plugin.name}: expected (${profile.ipam.why})`);
  return out;
}

/**
 * Said once in the `ready` status: how the runtime's and the profiled plugins' normal order differs from the
 * textbook, which the handshakes' `deviations` no longer repeat.
 */
export function normalOrderNote(runtime: string | null): {
  text: string;
  fields: Record<string, unknown>;
} {
  const profile = runtime === null ? undefined : runtimeProfiles[runtime];
  const normalOrder: Record<string, string[]> = {};
  if (profile) normalOrder[profile.runtime] = profile.unlikeTextbook;
  for (const plugin of Object.values(pluginProfiles))
    normalOrder[plugin.plugin] = plugin.unlikeTextbook;
  const text = profile
    ? `deviations are from ${profile.runtime}'s normal order, not the textbook's — ${Object.entries(
        normalOrder,
      )
        .map(([who, lines]) => `${who}: ${lines.join('; ')}`)
        .join('. ')}`
    : `no profile of runtime ${runtime ?? '(unknown)'}: deviations are from the textbook's order`;
  return { text, fields: { normalOrder } };
}
