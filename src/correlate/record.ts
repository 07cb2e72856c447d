// The records podwire emits (the NDJSON contract of DESIGN.md): one per pod handshake or teardown.

export interface PhaseRecord {
  /** Index of this phase in `phases`; `parentId` names the phase it ran inside (null: the top). */
  id: number;
  parentId: number | null;
  name: string;
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
  start: string;
  end: string;
  durationMs: number;
  phases: PhaseRecord[];
  deviations: string[];
  /** When the runtime passed a TRACEPARENT to the plugins: the trace this handshake belongs to. */
  traceparent: string | null;
}
