// A CRI client that talks to a container runtime the way the kubelet does, over runtime.v1 on its socket.
import { fileURLToPath } from 'node:url';
import { Client, credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { loadSync, type Options, type ServiceDefinition } from '@grpc/proto-loader';
import type {
  Container,
  ContainerConfig,
  ContainerFilter,
  ContainerMetadata,
  ContainerState,
  ContainerStatus,
  ImageSpec,
  LinuxPodSandboxStatus,
  Mount,
  MountPropagation,
  NamespaceMode,
  NamespaceOption,
  PodSandbox,
  PodSandboxConfig,
  PodSandboxFilter,
  PodSandboxMetadata,
  PodSandboxState,
  PodSandboxStatus,
  SecurityProfile,
  VersionInfo,
} from './types.js';

export type * from './types.js';

/** What the kubelet sends in VersionRequest (`kubeRuntimeAPIVersion` in pkg/kubelet/kuberuntime). */
export const kubeletRuntimeApiVersion = '0.1.0';

const defaultTimeoutMs = 30_000;
/** RunPodSandbox includes the pause container and every CNI plugin; the kubelet allows every call 2 min. */
const runPodSandboxTimeoutMs = 120_000;
const waitReadyPollMs = 200;
const waitReadyAttemptMs = 5_000;

const protoPath = fileURLToPath(new URL('./api.proto', import.meta.url));

const loaderOptions: Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

let runtimeService: ServiceDefinition | undefined;

/** runtime.v1.RuntimeService from api.proto: each method's path and its (de)serializers. */
export function runtimeServiceDefinition(): ServiceDefinition {
  if (runtimeService === undefined) {
    const service = loadSync(protoPath, loaderOptions)['runtime.v1.RuntimeService'];
    if (service === undefined || 'format' in service) {
      throw new Error(`${protoPath} does not define the service runtime.v1.RuntimeService`);
    }
    runtimeService = service;
  }
  return runtimeService;
}

export type RuntimeMethod =
  | 'Version'
  | 'RunPodSandbox'
  | 'StopPodSandbox'
  | 'RemovePodSandbox'
  | 'PodSandboxStatus'
  | 'ListPodSandbox'
  | 'CreateContainer'
  | 'StartContainer'
  | 'StopContainer'
  | 'RemoveContainer'
  | 'ListContainers'
  | 'ContainerStatus';

/** A failed CRI call. `details` is the runtime's own message; `message` is one line for the user. */
export class CriError extends Error {
  override readonly name = 'CriError';
  readonly method: string;
  /** The gRPC status code. */
  readonly code: number;
  /** The gRPC status name, e.g. 'UNKNOWN'. */
  readonly codeName: string;
  readonly details: string;

  constructor(method: string, code: number, details: string, message?: string) {
    const codeName = status[code] ?? `code ${code}`;
    super(oneLine(message ?? `CRI ${method} failed (${codeName}): ${details}`));
    this.method = method;
    this.code = code;
    this.codeName = codeName;
    this.details = details;
  }
}

export interface CriClientOptions {
  /** Deadline of each call unless the call sets its own; default 30 s (RunPodSandbox: at least 120 s). */
  timeoutMs?: number;
}

export class CriClient {
  /** The gRPC target, e.g. 'unix:///run/podwire-lab/containerd.sock'. */
  readonly endpoint: string;
  private readonly client: Client;
  private readonly service: ServiceDefinition;
  private readonly timeoutMs: number;
  private closed = false;

  private constructor(endpoint: string, timeoutMs: number) {
    this.endpoint = endpoint;
    this.timeoutMs = timeoutMs;
    this.service = runtimeServiceDefinition();
    this.client = new Client(endpoint, credentials.createInsecure(), {
      // A local socket is either there or not: retry it often rather than backing off for minutes.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1_000,
    });
  }

  /** `endpoint` is a gRPC target ('unix:///run/x.sock') or an absolute socket path. Connects lazily. */
  static connect(endpoint: string, options: CriClientOptions = {}): CriClient {
    const target = endpoint.startsWith('/') ? `unix://${endpoint}` : endpoint;
    return new CriClient(target, options.timeoutMs ?? defaultTimeoutMs);
  }

  async version(options: { timeoutMs?: number } = {}): Promise<VersionInfo> {
    const response = await this.call(
      'Version',
      { version: kubeletRuntimeApiVersion },
      options.timeoutMs,
    );
    return toVersionInfo(response);
  }

  /** Creates the sandbox, its network namespace and its network (CNI); resolves with the sandbox id. */
  async runPodSandbox(
    config: PodSandboxConfig,
    options: { runtimeHandler?: string; timeoutMs?: number } = {},
  ): Promise<string> {
    const response = await this.call(
      'RunPodSandbox',
      runPodSandboxRequest(config, options.runtimeHandler),
      options.timeoutMs ?? Math.max(runPodSandboxTimeoutMs, this.timeoutMs),
    );
    return toRunPodSandboxResponse(response).podSandboxId;
  }

  /** With `verbose`, `info` holds the runtime's JSON about the sandbox (containerd: pid, netns path, ...). */
  async podSandboxStatus(
    podSandboxId: string,
    options: { verbose?: boolean; timeoutMs?: number } = {},
  ): Promise<{ status: PodSandboxStatus; info: Record<string, string> }> {
    const method = 'PodSandboxStatus';
    const response = toPodSandboxStatusResponse(
      await this.call(
        method,
        podSandboxStatusRequest(podSandboxId, options.verbose ?? false),
        options.timeoutMs,
      ),
    );
    if (response.status === undefined) throw this.missingStatus(method, podSandboxId);
    return { status: response.status, info: response.info };
  }

  async listPodSandbox(filter?: PodSandboxFilter): Promise<PodSandbox[]> {
    const request = filter === undefined ? {} : { filter: podSandboxFilterMessage(filter) };
    const response = asObject(await this.call('ListPodSandbox', request)) ?? {};
    return objects(response, 'items').map(toPodSandbox);
  }

  async stopPodSandbox(podSandboxId: string, options: { timeoutMs?: number } = {}): Promise<void> {
    await this.call('StopPodSandbox', compact({ podSandboxId }), options.timeoutMs);
  }

  async removePodSandbox(
    podSandboxId: string,
    options: { timeoutMs?: number } = {},
  ): Promise<void> {
    await this.call('RemovePodSandbox', compact({ podSandboxId }), options.timeoutMs);
  }

  /** `sandboxConfig` must be the config the sandbox was run with: runtimes read it again here. */
  async createContainer(
    podSandboxId: string,
    config: ContainerConfig,
    sandboxConfig: PodSandboxConfig,
    options: { timeoutMs?: number } = {},
  ): Promise<string> {
    const response = asObject(
      await this.call(
        'CreateContainer',
        createContainerRequest(podSandboxId, config, sandboxConfig),
        options.timeoutMs,
      ),
    );
    return response === undefined ? '' : text(response, 'containerId');
  }

  async startContainer(containerId: string, options: { timeoutMs?: number } = {}): Promise<void> {
    await this.call('StartContainer', compact({ containerId }), options.timeoutMs);
  }

  /** Stops the container, as the kubelet does: SIGTERM, then SIGKILL after `timeoutSeconds` (its grace period). */
  async stopContainer(
    containerId: string,
    timeoutSeconds: number,
    options: { timeoutMs?: number } = {},
  ): Promise<void> {
    await this.call(
      'StopContainer',
      compact({ containerId, timeout: int64Field(BigInt(timeoutSeconds)) }),
      options.timeoutMs,
    );
  }

  async removeContainer(containerId: string, options: { timeoutMs?: number } = {}): Promise<void> {
    await this.call('RemoveContainer', compact({ containerId }), options.timeoutMs);
  }

  async listContainers(filter?: ContainerFilter): Promise<Container[]> {
    const request = filter === undefined ? {} : { filter: containerFilterMessage(filter) };
    const response = asObject(await this.call('ListContainers', request)) ?? {};
    return objects(response, 'containers').map(toContainer);
  }

  async containerStatus(
    containerId: string,
    options: { verbose?: boolean; timeoutMs?: number } = {},
  ): Promise<{ status: ContainerStatus; info: Record<string, string> }> {
    const method = 'ContainerStatus';
    const response =
      asObject(
        await this.call(
          method,
          compact({ containerId, verbose: options.verbose }),
          options.timeoutMs,
        ),
      ) ?? {};
    if (asObject(response.status) === undefined) throw this.missingStatus(method, containerId);
    return { status: toContainerStatus(response.status), info: stringMap(response, 'info') };
  }

  /**
   * Asks Version until the runtime answers or `timeoutMs` has passed, for a runtime that is still
   * starting. Rejects with the last failure.
   */
  async waitReady(timeoutMs: number): Promise<VersionInfo> {
    const deadline = Date.now() + timeoutMs;
    let last: CriError | undefined;
    for (let remaining = timeoutMs; remaining > 0; remaining = deadline - Date.now()) {
      try {
        return await this.version({ timeoutMs: Math.min(remaining, waitReadyAttemptMs) });
      } catch (error) {
        if (!(error instanceof CriError)) throw error;
        last = error;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(waitReadyPollMs, remaining)));
    }
    const because = last === undefined ? 'no attempt was made' : `last error: ${last.message}`;
    throw new CriError(
      'Version',
      last?.code ?? status.DEADLINE_EXCEEDED,
      last?.details ?? '',
      `the container runtime at ${this.endpoint} did not answer within ${timeoutMs} ms (${because})`,
    );
  }

  close(): void {
    this.closed = true;
    this.client.close();
  }

  private call(
    method: RuntimeMethod,
    request: object,
    timeoutMs: number = this.timeoutMs,
  ): Promise<unknown> {
    const definition = this.service[method];
    if (definition === undefined) {
      const details = `${method} is not in ${protoPath}`;
      return Promise.reject(new CriError(method, status.UNIMPLEMENTED, details));
    }
    if (this.closed) {
      const details = `the client for ${this.endpoint} was closed`;
      return Promise.reject(new CriError(method, status.CANCELLED, details));
    }
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        definition.path,
        definition.requestSerialize,
        definition.responseDeserialize,
        request,
        new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (error, response) => {
          if (error) reject(this.criError(method, error, timeoutMs));
          else resolve(response);
        },
      );
    });
  }

  private criError(method: RuntimeMethod, error: ServiceError, timeoutMs: number): CriError {
    const details = error.details || error.message;
    const failed = `CRI ${method} failed (${status[error.code] ?? error.code})`;
    switch (error.code) {
      case status.UNAVAILABLE: {
        const cause = connectionFailure(details);
        const hint = /EACCES|EPERM/.test(cause)
          ? 'run as root or check the permissions of the socket'
          : 'check that the container runtime is running (e.g. `podwire lab up`)';
        const message = `${failed}: cannot reach ${this.endpoint} (${cause}); ${hint}`;
        return new CriError(method, error.code, details, message);
      }
      case status.DEADLINE_EXCEEDED: {
        const message = `${failed}: no answer from ${this.endpoint} within ${timeoutMs} ms`;
        return new CriError(method, error.code, details, message);
      }
      default:
        return new CriError(method, error.code, details);
    }
  }

  private missingStatus(method: RuntimeMethod, id: string): CriError {
    const details = `the runtime answered without a status for ${id}`;
    return new CriError(method, status.INTERNAL, details);
  }
}

/** grpc-js wraps the socket error: "No connection established. Last error: Error: connect ENOENT ...". */
function connectionFailure(details: string): string {
  const cause = /Last error: (?:Error: )?(.*?)\.?(?: Resolution note:.*)?$/.exec(details)?.[1];
  return cause === undefined || cause === '' ? details : cause;
}

function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}

// ---- requests: TypeScript values to the loader's message objects -------------------------------
// Fields at their proto3 zero value are left out, as Go's encoder does, so what goes on the wire is what
// the kubelet would send for the same config. Sub-messages are kept even when empty: for some fields
// (dns_config) a present empty message means something else than an absent one.

type Message = Record<string, unknown>;

function compact(fields: Message): Message {
  const message: Message = {};
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined || value === '' || value === 0 || value === false) continue;
    if (Array.isArray(value) && value.length === 0) continue;
    message[name] = value;
  }
  return message;
}

function mapField(map: Record<string, string> | undefined): Record<string, string> | undefined {
  return map === undefined || Object.keys(map).length === 0 ? undefined : { ...map };
}

function int64Field(value: bigint | undefined): string | undefined {
  return value === undefined || value === 0n ? undefined : value.toString();
}

function int64Value(value: bigint | undefined): Message | undefined {
  return value === undefined ? undefined : compact({ value: int64Field(value) });
}

/** An enum at its zero value is left out like any other zero. */
function enumField<T extends string>(value: T | undefined, zero: T): T | undefined {
  return value === zero ? undefined : value;
}

/** Sent even at RuntimeDefault (an empty message): absent and RuntimeDefault differ to the runtime. */
function securityProfileMessage(profile: SecurityProfile | undefined): Message | undefined {
  return (
    profile &&
    compact({
      profileType: enumField(profile.profileType, 'RuntimeDefault'),
      localhostRef: profile.localhostRef,
    })
  );
}

function namespaceOptionMessage(options: NamespaceOption): Message {
  return compact({
    network: enumField(options.network, 'POD'),
    pid: enumField(options.pid, 'POD'),
    ipc: enumField(options.ipc, 'POD'),
    targetId: options.targetId,
  });
}

function podSandboxMetadataMessage(metadata: PodSandboxMetadata): Message {
  return compact({ ...metadata });
}

export function podSandboxConfigMessage(config: PodSandboxConfig): Message {
  const { dnsConfig, linux } = config;
  const securityContext = linux?.securityContext;
  return compact({
    metadata: podSandboxMetadataMessage(config.metadata),
    hostname: config.hostname,
    logDirectory: config.logDirectory,
    dnsConfig: dnsConfig && compact({ ...dnsConfig }),
    portMappings: config.portMappings?.map((mapping) =>
      compact({ ...mapping, protocol: enumField(mapping.protocol, 'TCP') }),
    ),
    labels: mapField(config.labels),
    annotations: mapField(config.annotations),
    linux:
      linux &&
      compact({
        cgroupParent: linux.cgroupParent,
        securityContext:
          securityContext &&
          compact({
            namespaceOptions:
              securityContext.namespaceOptions &&
              namespaceOptionMessage(securityContext.namespaceOptions),
            runAsUser: int64Value(securityContext.runAsUser),
            runAsGroup: int64Value(securityContext.runAsGroup),
            readonlyRootfs: securityContext.readonlyRootfs,
            supplementalGroups: securityContext.supplementalGroups?.map(String),
            privileged: securityContext.privileged,
            seccomp: securityProfileMessage(securityContext.seccomp),
            apparmor: securityProfileMessage(securityContext.apparmor),
          }),
        sysctls: mapField(linux.sysctls),
      }),
  });
}

export function runPodSandboxRequest(config: PodSandboxConfig, runtimeHandler?: string): Message {
  return compact({ config: podSandboxConfigMessage(config), runtimeHandler });
}

export function podSandboxStatusRequest(podSandboxId: string, verbose: boolean): Message {
  return compact({ podSandboxId, verbose });
}

export function podSandboxFilterMessage(filter: PodSandboxFilter): Message {
  return compact({
    id: filter.id,
    state: filter.state && compact({ state: enumField(filter.state, 'SANDBOX_READY') }),
    labelSelector: mapField(filter.labelSelector),
  });
}

function imageSpecMessage(image: ImageSpec): Message {
  return compact({ ...image, annotations: mapField(image.annotations) });
}

function mountMessage(mount: Mount): Message {
  return compact({ ...mount, propagation: enumField(mount.propagation, 'PROPAGATION_PRIVATE') });
}

export function containerConfigMessage(config: ContainerConfig): Message {
  const securityContext = config.linux?.securityContext;
  return compact({
    metadata: compact({ ...config.metadata }),
    image: imageSpecMessage(config.image),
    command: config.command,
    args: config.args,
    workingDir: config.workingDir,
    envs: config.envs?.map((env) => compact({ ...env })),
    mounts: config.mounts?.map(mountMessage),
    labels: mapField(config.labels),
    annotations: mapField(config.annotations),
    logPath: config.logPath,
    stdin: config.stdin,
    stdinOnce: config.stdinOnce,
    tty: config.tty,
    linux:
      config.linux &&
      compact({
        resources:
          config.linux.resources &&
          compact({
            cpuPeriod: int64Field(config.linux.resources.cpuPeriod),
            cpuQuota: int64Field(config.linux.resources.cpuQuota),
            cpuShares: int64Field(config.linux.resources.cpuShares),
            memoryLimitInBytes: int64Field(config.linux.resources.memoryLimitInBytes),
            oomScoreAdj: int64Field(config.linux.resources.oomScoreAdj),
            cpusetCpus: config.linux.resources.cpusetCpus,
            cpusetMems: config.linux.resources.cpusetMems,
          }),
        securityContext:
          securityContext &&
          compact({
            capabilities:
              securityContext.capabilities && compact({ ...securityContext.capabilities }),
            privileged: securityContext.privileged,
            namespaceOptions:
              securityContext.namespaceOptions &&
              namespaceOptionMessage(securityContext.namespaceOptions),
            runAsUser: int64Value(securityContext.runAsUser),
            runAsGroup: int64Value(securityContext.runAsGroup),
            runAsUsername: securityContext.runAsUsername,
            readonlyRootfs: securityContext.readonlyRootfs,
            noNewPrivs: securityContext.noNewPrivs,
            seccomp: securityProfileMessage(securityContext.seccomp),
            apparmor: securityProfileMessage(securityContext.apparmor),
          }),
      }),
  });
}

export function createContainerRequest(
  podSandboxId: string,
  config: ContainerConfig,
  sandboxConfig: PodSandboxConfig,
): Message {
  return compact({
    podSandboxId,
    config: containerConfigMessage(config),
    sandboxConfig: podSandboxConfigMessage(sandboxConfig),
  });
}

export function containerFilterMessage(filter: ContainerFilter): Message {
  return compact({
    id: filter.id,
    state: filter.state && compact({ state: enumField(filter.state, 'CONTAINER_CREATED') }),
    podSandboxId: filter.podSandboxId,
    labelSelector: mapField(filter.labelSelector),
  });
}

// ---- responses: the loader's objects to TypeScript values ---------------------------------------
// The loader gives camelCase plain objects with int64 as decimal strings and enums as names (or the
// number, for a value this schema does not know). Nothing here throws: a missing or odd field reads as
// its zero value.

type Fields = Readonly<Record<string, unknown>>;

function asObject(value: unknown): Fields | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Fields)
    : undefined;
}

function text(fields: Fields, name: string): string {
  const value = fields[name];
  return typeof value === 'string' ? value : '';
}

function integer(fields: Fields, name: string): number {
  const value = fields[name];
  return typeof value === 'number' && Number.isInteger(value) ? value : 0;
}

function int64(fields: Fields, name: string): bigint {
  const value = fields[name];
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return BigInt(value);
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
  return 0n;
}

function flag(fields: Fields, name: string): boolean {
  return fields[name] === true;
}

function objects(fields: Fields, name: string): Fields[] {
  const value = fields[name];
  if (!Array.isArray(value)) return [];
  return value.flatMap((item): Fields[] => {
    const fields = asObject(item);
    return fields === undefined ? [] : [fields];
  });
}

function stringMap(fields: Fields, name: string): Record<string, string> {
  const map: Record<string, string> = {};
  for (const [key, value] of Object.entries(asObject(fields[name]) ?? {})) {
    if (typeof value === 'string') map[key] = value;
  }
  return map;
}

function oneOf<T extends string>(fields: Fields, name: string, values: readonly T[], other: T): T {
  const value = fields[name];
  return values.find((known) => known === value) ?? other;
}

const namespaceModes: readonly NamespaceMode[] = ['POD', 'CONTAINER', 'NODE', 'TARGET'];
// A sandbox in a state this schema does not know is not one podwire may call ready.
const podSandboxStates: readonly PodSandboxState[] = ['SANDBOX_READY', 'SANDBOX_NOTREADY'];
const containerStates: readonly ContainerState[] = [
  'CONTAINER_CREATED',
  'CONTAINER_RUNNING',
  'CONTAINER_EXITED',
  'CONTAINER_UNKNOWN',
];
const mountPropagations: readonly MountPropagation[] = [
  'PROPAGATION_PRIVATE',
  'PROPAGATION_HOST_TO_CONTAINER',
  'PROPAGATION_BIDIRECTIONAL',
];

export function toVersionInfo(message: unknown): VersionInfo {
  const fields = asObject(message) ?? {};
  return {
    version: text(fields, 'version'),
    runtimeName: text(fields, 'runtimeName'),
    runtimeVersion: text(fields, 'runtimeVersion'),
    runtimeApiVersion: text(fields, 'runtimeApiVersion'),
  };
}

export function toRunPodSandboxResponse(message: unknown): { podSandboxId: string } {
  return { podSandboxId: text(asObject(message) ?? {}, 'podSandboxId') };
}

function toPodSandboxMetadata(message: unknown): PodSandboxMetadata {
  const fields = asObject(message) ?? {};
  return {
    name: text(fields, 'name'),
    uid: text(fields, 'uid'),
    namespace: text(fields, 'namespace'),
    attempt: integer(fields, 'attempt'),
  };
}

function toNamespaceOption(fields: Fields): NamespaceOption {
  return {
    network: oneOf(fields, 'network', namespaceModes, 'POD'),
    pid: oneOf(fields, 'pid', namespaceModes, 'POD'),
    ipc: oneOf(fields, 'ipc', namespaceModes, 'POD'),
    targetId: text(fields, 'targetId'),
  };
}

function toLinuxPodSandboxStatus(fields: Fields): LinuxPodSandboxStatus {
  const namespaces = asObject(fields.namespaces);
  if (namespaces === undefined) return {};
  const options = asObject(namespaces.options);
  return { namespaces: options === undefined ? {} : { options: toNamespaceOption(options) } };
}

export function toPodSandboxStatus(message: unknown): PodSandboxStatus {
  const fields = asObject(message) ?? {};
  const network = asObject(fields.network);
  const linux = asObject(fields.linux);
  return {
    id: text(fields, 'id'),
    metadata: toPodSandboxMetadata(fields.metadata),
    state: oneOf(fields, 'state', podSandboxStates, 'SANDBOX_NOTREADY'),
    createdAt: int64(fields, 'createdAt'),
    network: network && {
      ip: text(network, 'ip'),
      additionalIps: objects(network, 'additionalIps').map((podIp) => text(podIp, 'ip')),
    },
    linux: linux && toLinuxPodSandboxStatus(linux),
    labels: stringMap(fields, 'labels'),
    annotations: stringMap(fields, 'annotations'),
    runtimeHandler: text(fields, 'runtimeHandler'),
  };
}

export function toPodSandboxStatusResponse(message: unknown): {
  status: PodSandboxStatus | undefined;
  info: Record<string, string>;
  containersStatuses: ContainerStatus[];
  /** Nanoseconds since the Unix epoch; 0 from runtimes older than the field. */
  timestamp: bigint;
} {
  const fields = asObject(message) ?? {};
  const sandboxStatus = asObject(fields.status);
  return {
    status: sandboxStatus && toPodSandboxStatus(sandboxStatus),
    info: stringMap(fields, 'info'),
    containersStatuses: objects(fields, 'containersStatuses').map(toContainerStatus),
    timestamp: int64(fields, 'timestamp'),
  };
}

export function toPodSandbox(message: unknown): PodSandbox {
  const fields = asObject(message) ?? {};
  return {
    id: text(fields, 'id'),
    metadata: toPodSandboxMetadata(fields.metadata),
    state: oneOf(fields, 'state', podSandboxStates, 'SANDBOX_NOTREADY'),
    createdAt: int64(fields, 'createdAt'),
    labels: stringMap(fields, 'labels'),
    annotations: stringMap(fields, 'annotations'),
    runtimeHandler: text(fields, 'runtimeHandler'),
  };
}

function toContainerMetadata(message: unknown): ContainerMetadata {
  const fields = asObject(message) ?? {};
  return { name: text(fields, 'name'), attempt: integer(fields, 'attempt') };
}

function toImageSpec(message: unknown): ImageSpec | undefined {
  const fields = asObject(message);
  return (
    fields && {
      image: text(fields, 'image'),
      annotations: stringMap(fields, 'annotations'),
      userSpecifiedImage: text(fields, 'userSpecifiedImage'),
      runtimeHandler: text(fields, 'runtimeHandler'),
    }
  );
}

function toMount(fields: Fields): Mount {
  return {
    containerPath: text(fields, 'containerPath'),
    hostPath: text(fields, 'hostPath'),
    readonly: flag(fields, 'readonly'),
    selinuxRelabel: flag(fields, 'selinuxRelabel'),
    propagation: oneOf(fields, 'propagation', mountPropagations, 'PROPAGATION_PRIVATE'),
  };
}

export function toContainer(message: unknown): Container {
  const fields = asObject(message) ?? {};
  return {
    id: text(fields, 'id'),
    podSandboxId: text(fields, 'podSandboxId'),
    metadata: toContainerMetadata(fields.metadata),
    image: toImageSpec(fields.image),
    imageRef: text(fields, 'imageRef'),
    state: oneOf(fields, 'state', containerStates, 'CONTAINER_UNKNOWN'),
    createdAt: int64(fields, 'createdAt'),
    labels: stringMap(fields, 'labels'),
    annotations: stringMap(fields, 'annotations'),
    imageId: text(fields, 'imageId'),
  };
}

export function toContainerStatus(message: unknown): ContainerStatus {
  const fields = asObject(message) ?? {};
  return {
    id: text(fields, 'id'),
    metadata: toContainerMetadata(fields.metadata),
    state: oneOf(fields, 'state', containerStates, 'CONTAINER_UNKNOWN'),
    createdAt: int64(fields, 'createdAt'),
    startedAt: int64(fields, 'startedAt'),
    finishedAt: int64(fields, 'finishedAt'),
    exitCode: integer(fields, 'exitCode'),
    image: toImageSpec(fields.image),
    imageRef: text(fields, 'imageRef'),
    reason: text(fields, 'reason'),
    message: text(fields, 'message'),
    labels: stringMap(fields, 'labels'),
    annotations: stringMap(fields, 'annotations'),
    mounts: objects(fields, 'mounts').map(toMount),
    logPath: text(fields, 'logPath'),
    imageId: text(fields, 'imageId'),
  };
}
