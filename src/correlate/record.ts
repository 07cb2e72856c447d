// The records podwire emits (the NDJSON contract of docs/records.md): one per pod handshake or teardown.

/**
 * Who acted in a phase, set by the correlator where it makes the phase so that no reader parses names: `cri` a
 * runtime's CRI call, `netns` the pod's namespace pinned or deleted, `cni` a plugin the runtime ran, `ipam` a
 * plugin a plugin ran, `rtnetlink` a request a plugin sent the kernel, `sandbox` the infra container's start.
 * In the order the timeline's legend lists them.
 */
export const phaseKinds = ['cri', 'netns', 'cni', 'ipam', 'rtnetlink', 'sandbox'] as const;
export type PhaseKind = (typeof phaseKinds)[number];

export interface PhaseRecord {
  /** Index of this phase in `phases`; `parentId` names the phase it ran inside (null: the top). */
  id: number;
  parentId: number | null;
  name: string;
  kind: PhaseKind;
  start: string;
  end: string | null;
  durationMs: number | null;
  attributes: Record<string, string | number | boolean>;
  error?: string;
}

export interface HandshakeRecord {
  kind: 'handshake' | 'teardown';
  sandboxId: string | null;
  runtime: string | null;
  pod: { namespace: string | null; name: string | null; uid: string | null };
  netns: string | null;
  podIP: string | null;
  hostVeth: string | null;
  podInterface: string | null;
  bridge: string | null;
  cni: string[];
  outcome: 'ok' | 'failed' | 'incomplete';
  error: { phase: string; message: string } | null;
  /** What the record may lack and why, one line each; empty when every phase is whole (docs/records.md). */
  missing: string[];
  start: string;
  end: string;
  durationMs: number;
  phases: PhaseRecord[];
  deviations: string[];
  /** When the runtime passed a TRACEPARENT to the plugins: the trace this handshake belongs to. */
  traceparent: string | null;
}
