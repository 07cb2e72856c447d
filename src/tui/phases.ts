// A record's phases as the timeline reads them: what kind of step each is, how they nest, where time went.
import type { HandshakeRecord, PhaseKind, PhaseRecord } from '../correlate/record.js';
import { earliest, epochNanos, latest } from '../time.js';

/** The legend's name for each kind of phase (the waterfall colours them by kind). */
export const kindLabel: Record<PhaseKind, string> = {
  cri: 'CRI',
  netns: 'netns',
  cni: 'CNI plugin',
  ipam: 'IPAM',
  rtnetlink: 'rtnetlink',
  sandbox: 'sandbox',
};

/** A plugin asking the kernel about a link or address (RTM_GETLINK, RTM_GETADDR…): true, but rarely the story. */
export function isLookup(phase: PhaseRecord): boolean {
  const type = phase.attributes['podwire.netlink.type'];
  return phase.kind === 'rtnetlink' && typeof type === 'string' && type.startsWith('RTM_GET');
}

/** Epoch nanoseconds of a record time, or null when it is not the RFC 3339 podwire writes. */
export function timeNs(text: string | null): bigint | null {
  if (text === null) return null;
  try {
    return epochNanos(text);
  } catch {
    const ms = Date.parse(text);
    return Number.isNaN(ms) ? null : BigInt(ms) * 1_000_000n;
  }
}

export interface PlacedPhase {
  phase: PhaseRecord;
  /** 0 for a top phase (the CRI call), one more for each phase it ran inside. */
  depth: number;
  hasChildren: boolean;
}

/**
 * The phases in tree order — each parent followed by what ran inside it, siblings by start time — so that
 * indentation shows nesting. A parent that is missing, or a loop of parents, leaves the phase at the top:
 * an odd record is drawn flat rather than not at all.
 */
export function phaseTree(record: HandshakeRecord): PlacedPhase[] {
  const phases = record.phases ?? [];
  const byId = new Map<number, PhaseRecord>();
  for (const phase of phases) if (!byId.has(phase.id)) byId.set(phase.id, phase);
  const children = new Map<number | null, PhaseRecord[]>();
  for (const phase of byId.values()) {
    const parent =
      phase.parentId !== null && phase.parentId !== phase.id && byId.has(phase.parentId)
        ? phase.parentId
        : null;
    const siblings = children.get(parent) ?? [];
    siblings.push(phase);
    children.set(parent, siblings);
  }
  const starts = new Map<PhaseRecord, bigint>();
  const startOf = (phase: PhaseRecord) => {
    let ns = starts.get(phase);
    if (ns === undefined) {
      ns = timeNs(phase.start) ?? 0n;
      starts.set(phase, ns);
    }
    return ns;
  };
  for (const siblings of children.values())
    siblings.sort((a, b) =>
      startOf(a) < startOf(b) ? -1 : startOf(a) > startOf(b) ? 1 : a.id - b.id,
    );

  const placed: PlacedPhase[] = [];
  const seen = new Set<number>();
  const visit = (roots: PhaseRecord[]) => {
    const stack = roots.map((phase) => ({ phase, depth: 0 })).reverse();
    while (stack.length > 0) {
      const next = stack.pop();
      if (!next || seen.has(next.phase.id)) continue;
      seen.add(next.phase.id);
      const inside = children.get(next.phase.id) ?? [];
      placed.push({ phase: next.phase, depth: next.depth, hasChildren: inside.length > 0 });
      for (let i = inside.length - 1; i >= 0; i--) {
        const child = inside[i];
        if (child) stack.push({ phase: child, depth: next.depth + 1 });
      }
    }
  };
  visit(children.get(null) ?? []);
  // Phases caught in a loop of parents were never reached from the top: shown flat at the end.
  visit([...byId.values()].filter((phase) => !seen.has(phase.id)));
  return placed;
}

/**
 * Time a phase spent itself: its duration minus the time covered by phases inside it. A plugin that waited
 * on its IPAM child is not itself slow — the IPAM is.
 */
function selfMs(phase: PhaseRecord, inside: PhaseRecord[]): number | null {
  const start = timeNs(phase.start);
  const end = timeNs(phase.end);
  if (start === null || end === null || phase.durationMs === null) return null;
  const spans = inside
    .map((child) => [timeNs(child.start), timeNs(child.end)] as const)
    .flatMap(([from, to]) =>
      from === null || to === null
        ? []
        : [[latest([from, start]), earliest([to, end])] as [bigint, bigint]],
    )
    .filter(([from, to]) => to > from)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  let covered = 0n;
  let reach = start;
  for (const [from, to] of spans) {
    const begin = latest([from, reach]);
    if (to > begin) {
      covered += to - begin;
      reach = to;
    }
  }
  return Math.max(0, phase.durationMs - Number(covered) / 1e6);
}

/**
 * The phase to blame for a slow record: of the phases below the CRI calls (the top phases span everything,
 * so they would always win), the one that spent the most time itself — a leaf such as `sandbox start` or
 * `veth delete`, or a plugin's own work outside its children. Phases that never ended are not ranked.
 */
export function slowestPhase(record: HandshakeRecord): PhaseRecord | null {
  const phases = record.phases ?? [];
  const inside = new Map<number, PhaseRecord[]>();
  for (const phase of phases) {
    if (phase.parentId === null || phase.parentId === phase.id) continue;
    const list = inside.get(phase.parentId) ?? [];
    list.push(phase);
    inside.set(phase.parentId, list);
  }
  let best: PhaseRecord | null = null;
  let bestSelf = -1;
  for (const phase of phases) {
    if (phase.parentId === null) continue;
    const self = selfMs(phase, inside.get(phase.id) ?? []);
    if (self !== null && self > bestSelf) {
      best = phase;
      bestSelf = self;
    }
  }
  return best;
}
