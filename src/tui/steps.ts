// The waterfall's rows as steps: lookups set aside, the netlink calls that serve a step folded into it, interfaces named.
import type { HandshakeRecord, PhaseRecord } from '../correlate/record.js';
import { isLookup, type PlacedPhase, timeNs } from './phases.js';

/** Names of interfaces by netlink index, per network namespace: what a row says instead of `ifindex 7`. */
export type InterfaceNames = (index: number, netnsInum: number | undefined) => string;

const numberAttribute = (phase: PhaseRecord, key: string): number | undefined => {
  const value = phase.attributes?.[key];
  return typeof value === 'number' ? value : undefined;
};

const stringAttribute = (phase: PhaseRecord, key: string): string | undefined => {
  const value = phase.attributes?.[key];
  return typeof value === 'string' && value !== '' ? value : undefined;
};

const indexKey = (index: number, netnsInum: number | undefined) => `${netnsInum ?? '?'}:${index}`;

/** The index a request acts on: a link's, an address's or a route's output interface (0 is "any"). */
function actedIndex(phase: PhaseRecord): number | undefined {
  const index =
    numberAttribute(phase, 'podwire.link.index') ??
    numberAttribute(phase, 'podwire.addr.index') ??
    numberAttribute(phase, 'podwire.route.oif');
  return index === undefined || index === 0 ? undefined : index;
}

/**
 * Index → name from the record's own phases. A request may carry both (a link named and numbered); more often
 * a plugin looks a link up by name (RTM_GETLINK eth0) and its next request acts on an index: the index the
 * lookup answered. Best effort: a name is only ever taken from the same process, in the namespace it asked in.
 */
export function interfaceNames(record: HandshakeRecord): InterfaceNames {
  const names = new Map<string, string>();
  const learn = (index: number | undefined, inum: number | undefined, name: string | undefined) => {
    if (index === undefined || index === 0 || name === undefined) return;
    const key = indexKey(index, inum);
    if (!names.has(key)) names.set(key, name);
  };
  const calls = (record.phases ?? [])
    .filter((phase) => phase.kind === 'rtnetlink')
    .map((phase) => ({ phase, start: timeNs(phase.start) ?? 0n }))
    .sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.phase.id - b.phase.id));
  const askedBy = new Map<number | undefined, PhaseRecord>();
  for (const { phase } of calls) {
    const inum = numberAttribute(phase, 'podwire.netns_inum');
    const name = stringAttribute(phase, 'network.interface.name');
    const pid = numberAttribute(phase, 'process.pid');
    learn(numberAttribute(phase, 'podwire.link.index'), inum, name);
    const acted = actedIndex(phase);
    const asked = askedBy.get(pid);
    if (acted !== undefined) {
      // The answer is used by the next request that names an index (a dump of addresses names none).
      askedBy.delete(pid);
      if (asked && numberAttribute(asked, 'podwire.netns_inum') === inum)
        learn(acted, inum, stringAttribute(asked, 'network.interface.name'));
    }
    if (isLookup(phase) && phase.attributes['podwire.netlink.type'] === 'RTM_GETLINK' && name)
      askedBy.set(pid, phase);
  }
  return (index, netnsInum) => names.get(indexKey(index, netnsInum)) ?? `ifindex ${index}`;
}

/** The interfaces a phase acts on, as `netns:index` or `netns:name` keys: how calls are matched to a step. */
function actsOn(phase: PhaseRecord, names: InterfaceNames): Set<string> {
  const inum = numberAttribute(phase, 'podwire.netns_inum');
  const acted = new Set<string>();
  const name = stringAttribute(phase, 'network.interface.name');
  if (name) acted.add(`${inum ?? '?'}:${name}`);
  for (const key of ['podwire.link.index', 'podwire.addr.index', 'podwire.route.oif']) {
    const index = numberAttribute(phase, key);
    if (index !== undefined && index !== 0) acted.add(`${inum ?? '?'}:${names(index, inum)}`);
  }
  const peer = stringAttribute(phase, 'podwire.veth.peer_name');
  // The peer lives in another namespace (its fd is not an inum): matched by name alone, below.
  if (peer) acted.add(`*:${peer}`);
  const master = numberAttribute(phase, 'podwire.link.master_index');
  if (master !== undefined && master !== 0) acted.add(`${inum ?? '?'}:${names(master, inum)}`);
  return acted;
}

const overlaps = (a: Set<string>, b: Set<string>) => {
  for (const key of a) {
    if (b.has(key)) return true;
    const name = key.slice(key.indexOf(':') + 1);
    if (b.has(`*:${name}`) || (key.startsWith('*:') && [...b].some((k) => k.endsWith(`:${name}`))))
      return true;
  }
  return false;
};

/** What a row says it acts on, after its name: `eth0/vetha0f56bdc`, `vetha0f56bdc to pwlab0`, `eth0 10.244.77.4/24`. */
export function phaseTarget(phase: PhaseRecord, names: InterfaceNames): string | null {
  const inum = numberAttribute(phase, 'podwire.netns_inum');
  const link = (key: string) => {
    const index = numberAttribute(phase, key);
    return index === undefined || index === 0 ? undefined : names(index, inum);
  };
  const name = stringAttribute(phase, 'network.interface.name');
  if (phase.kind === 'cni' || phase.kind === 'ipam') return name ?? null;
  if (phase.kind !== 'rtnetlink') return null;
  const own = name ?? link('podwire.link.index');
  const parts: string[] = [];
  const peer = stringAttribute(phase, 'podwire.veth.peer_name');
  const master = link('podwire.link.master_index');
  if (own) parts.push(peer ? `${own}/${peer}` : own);
  else if (peer) parts.push(`peer ${peer}`);
  if (master) parts.push(`to ${master}`);
  const addrIndex = link('podwire.addr.index');
  const address = stringAttribute(phase, 'podwire.addr.address');
  if (addrIndex && !own) parts.push(addrIndex);
  if (address) parts.push(address);
  const oif = link('podwire.route.oif');
  const dst = stringAttribute(phase, 'podwire.route.dst');
  const gateway = stringAttribute(phase, 'podwire.route.gateway');
  if (oif && !own) parts.push(oif);
  if (dst) parts.push(dst);
  if (gateway) parts.push(`via ${gateway}`);
  return parts.length > 0 ? parts.join(' ') : null;
}

/** Calls that only serve a step (a link brought up, plumbing such as RTM_NEWLINK of a bridge that exists). */
function foldable(phase: PhaseRecord): boolean {
  if (phase.kind !== 'rtnetlink' || (phase.error ?? '') !== '') return false;
  return phase.name === 'link up' || phase.name.startsWith('rtnetlink ');
}

export interface Step extends PlacedPhase {
  /** Calls folded into this row, in the order they ran (not counting the row's own phase). */
  folded: PhaseRecord[];
  target: string | null;
}

/**
 * The rows of a record in tree order. Unfolded, one per phase. Folded: lookups that did not fail are left
 * out (counted), and each call that only serves a step joins the row of the step it acts on — the nearest
 * one before it under the same plugin, else the nearest after it — or, serving none, the plugin's own row.
 */
export function recordSteps(
  record: HandshakeRecord,
  placed: PlacedPhase[],
  fold: boolean,
): { steps: Step[]; hiddenLookups: number; foldedCalls: number } {
  const names = interfaceNames(record);
  const steps: Step[] = placed.map((place) => ({
    ...place,
    folded: [],
    target: phaseTarget(place.phase, names),
  }));
  if (!fold) return { steps, hiddenLookups: 0, foldedCalls: 0 };
  const hidden = new Set<Step>();
  let hiddenLookups = 0;
  let foldedCalls = 0;
  const byParent = new Map<number | null, Step[]>();
  for (const step of steps) {
    const siblings = byParent.get(step.phase.parentId) ?? [];
    siblings.push(step);
    byParent.set(step.phase.parentId, siblings);
  }
  const parentStep = new Map(steps.map((step) => [step.phase.id, step]));
  const position = new Map(steps.map((step, index) => [step, index]));
  const acts = new Map<Step, Set<string>>();
  const actsOf = (step: Step) => {
    let set = acts.get(step);
    if (!set) {
      set = actsOn(step.phase, names);
      acts.set(step, set);
    }
    return set;
  };
  for (const step of steps) {
    const failed = (step.phase.error ?? '') !== '';
    if (isLookup(step.phase) && !failed) {
      hidden.add(step);
      hiddenLookups++;
      continue;
    }
    if (!foldable(step.phase)) continue;
    const siblings = (byParent.get(step.phase.parentId) ?? []).filter(
      (other) =>
        other.depth === step.depth &&
        other.phase.kind === 'rtnetlink' &&
        !foldable(other.phase) &&
        !isLookup(other.phase),
    );
    const here = position.get(step) ?? 0;
    const at = siblings.findIndex((other) => (position.get(other) ?? 0) > here);
    const before = (at < 0 ? siblings : siblings.slice(0, at)).reverse();
    const after = at < 0 ? [] : siblings.slice(at);
    const mine = actsOf(step);
    const into =
      before.find((other) => overlaps(mine, actsOf(other))) ??
      after.find((other) => overlaps(mine, actsOf(other))) ??
      (step.phase.parentId === null ? undefined : parentStep.get(step.phase.parentId));
    if (!into || hidden.has(into)) continue;
    into.folded.push(step.phase);
    hidden.add(step);
    foldedCalls++;
  }
  for (const step of steps)
    step.folded.sort((a, b) => {
      const [x, y] = [timeNs(a.start) ?? 0n, timeNs(b.start) ?? 0n];
      return x < y ? -1 : x > y ? 1 : a.id - b.id;
    });
  return { steps: steps.filter((step) => !hidden.has(step)), hiddenLookups, foldedCalls };
}
