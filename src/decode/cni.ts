// CNI environments and results: what the runtime told a plugin, and what the plugin answered on stdout.

export interface CniEnvironment {
  command: string | null;
  containerId: string | null;
  netns: string | null;
  ifname: string | null;
  path: string | null;
  /** CNI_ARGS split into its key=value pairs (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID, ...). */
  args: Record<string, string>;
  traceparent: string | null;
  tracestate: string | null;
}

/** Reads CNI_* variables; CNI_ARGS is `k=v;k=v` in any order (containerd shuffles it). */
export function cniEnvironment(vars: Record<string, string>): CniEnvironment {
  const args: Record<string, string> = {};
  for (const pair of (vars.CNI_ARGS ?? '').split(';')) {
    const eq = pair.indexOf('=');
    if (eq > 0) args[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const value = (name: string) =>
    vars[name] === undefined || vars[name] === '' ? null : (vars[name] as string);
  return {
    command: value('CNI_COMMAND'),
    containerId: value('CNI_CONTAINERID'),
    netns: value('CNI_NETNS'),
    ifname: value('CNI_IFNAME'),
    path: value('CNI_PATH'),
    args,
    traceparent: value('TRACEPARENT'),
    tracestate: value('TRACESTATE'),
  };
}

export interface CniInterface {
  name: string;
  mac?: string;
  sandbox?: string;
}

export interface CniResult {
  cniVersion: string | null;
  interfaces: CniInterface[];
  ips: { address: string; gateway?: string; interface?: number }[];
  routes: { dst: string; gw?: string }[];
}

export interface CniError {
  code: number | null;
  msg: string;
  details: string | null;
}

export type CniOutput =
  | { type: 'result'; result: CniResult }
  | { type: 'error'; error: CniError }
  | { type: 'unreadable'; text: string; why: string };

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
const str = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

/** A plugin's stdout: a result, an error object, or text that is neither (cut by the probe, or not JSON). */
export function cniOutput(text: string): CniOutput {
  const trimmed = text.replace(/\0+$/, '').trim();
  // Most DELs print nothing: said without a JSON.parse that throws (an exception costs more than the parse).
  if (trimmed === '') return { type: 'unreadable', text: '', why: 'no output' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(trimmed);
  } catch {
    return {
      type: 'unreadable',
      text: trimmed.slice(0, 500),
      why: 'not JSON (cut at the probe limit?)',
    };
  }
  if (!isObject(parsed))
    return { type: 'unreadable', text: trimmed.slice(0, 500), why: 'not a JSON object' };
  if (typeof parsed.msg === 'string' || (typeof parsed.code === 'number' && parsed.code !== 0)) {
    return {
      type: 'error',
      error: {
        code: typeof parsed.code === 'number' ? parsed.code : null,
        msg: str(parsed.msg) ?? '',
        details: str(parsed.details) ?? null,
      },
    };
  }
  const interfaces = (Array.isArray(parsed.interfaces) ? parsed.interfaces : [])
    .filter(isObject)
    .map((i) => ({
      name: str(i.name) ?? '',
      ...(str(i.mac) ? { mac: str(i.mac) } : {}),
      ...(str(i.sandbox) ? { sandbox: str(i.sandbox) } : {}),
    }));
  const ips = (Array.isArray(parsed.ips) ? parsed.ips : []).filter(isObject).map((ip) => ({
    address: str(ip.address) ?? '',
    ...(str(ip.gateway) ? { gateway: str(ip.gateway) } : {}),
    ...(typeof ip.interface === 'number' ? { interface: ip.interface } : {}),
  }));
  const routes = (Array.isArray(parsed.routes) ? parsed.routes : []).filter(isObject).map((r) => ({
    dst: str(r.dst) ?? '',
    ...(str(r.gw) ? { gw: str(r.gw) } : {}),
  }));
  return {
    type: 'result',
    result: { cniVersion: str(parsed.cniVersion) ?? null, interfaces, ips, routes },
  };
}

/** The one line a user reads for a plugin error: its message and details. */
export function cniErrorMessage(error: CniError): string {
  return error.details && error.details !== error.msg
    ? `${error.msg}: ${error.details}`
    : error.msg;
}
