// The node's name as Kubernetes knows it, one rule for every place that says it (traces, the live view, the timeline).
import { hostname } from 'node:os';

/** The DaemonSet passes spec.nodeName as NODE_NAME (PODWIRE_NODE_NAME overrides it); else the host name. */
export function nodeName(): string {
  return process.env.PODWIRE_NODE_NAME?.trim() || process.env.NODE_NAME?.trim() || hostname();
}
