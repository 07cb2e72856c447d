// The event vocabulary every stage speaks: what the probes saw, one typed event per kernel or runtime action.

interface Base {
  /** CLOCK_MONOTONIC nanoseconds, as the kernel stamped it. */
  ns: bigint;
  pid: number;
  tid: number;
}

export type ProbeEvent =
  | (Base & { kind: 'cni_exec'; ppid: number; netnsInum: number; path: string })
  | (Base & { kind: 'cni_env'; name: string; value: string })
  | (Base & { kind: 'cni_gone'; status: number })
  | (Base & { kind: 'cni_out'; length: number; bytes: Uint8Array })
  | (Base & { kind: 'ns_unshare'; ret: number; flags: number; netnsInum: number })
  | (Base & { kind: 'ns_clone'; ret: number; flags: number })
  | (Base & { kind: 'ns_mount'; ret: number; target: string })
  | (Base & { kind: 'ns_umount'; ret: number; target: string })
  | (Base & { kind: 'ns_setns'; ret: number; nstype: number; netnsInum: number })
  | (Base & { kind: 'nl_socket'; fd: number })
  | (Base & { kind: 'nl_send'; fd: number; length: number; netnsInum: number; bytes: Uint8Array })
  | (Base & { kind: 'nl_recv'; fd: number; length: number; netnsInum: number; bytes: Uint8Array })
  | (Base & { kind: 'nl_extack'; message: string })
  | (Base & { kind: 'sb_exec'; ppid: number; netnsInum: number; argv: string[] })
  | (Base & { kind: 'sb_init'; netnsInum: number; path: string })
  | (Base & { kind: 'cri_enter'; method: string; goroutine: string; args: Record<string, string> })
  | (Base & {
      kind: 'cri_return';
      method: string;
      goroutine: string;
      failed: boolean;
      sandboxId: string | null;
    });

export type ProbeEventKind = ProbeEvent['kind'];

/** What the daemon says about itself, in the NDJSON stream as `{"kind":"status",...}`. */
export interface StatusEvent {
  kind: 'status';
  state:
    | 'ready'
    | 'probe-restarted'
    | 'probe-failed'
    | 'events-lost'
    | 'events-late'
    | 'runtime-found'
    | 'runtime-gone'
    | 'runtime-unsupported'
    | 'input-problem'
    | 'plugin-probes'
    | 'plugins-changed'
    | 'export-failed'
    | 'export-resumed'
    | 'viewer-dropped'
    | 'stopped';
  time: string;
  message: string;
  [detail: string]: unknown;
}

/** A status line, stamped now. */
export function status(
  state: StatusEvent['state'],
  message: string,
  details: Record<string, unknown> = {},
): StatusEvent {
  return { kind: 'status', state, time: new Date().toISOString(), message, ...details };
}
