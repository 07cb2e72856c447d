// The CRI client puts the published cri-api field numbers on the wire and reports a runtime's failures in one line.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type sendUnaryData,
  status,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CriClient,
  CriError,
  createContainerRequest,
  type PodSandboxConfig,
  podSandboxStatusRequest,
  type RuntimeMethod,
  runPodSandboxRequest,
  runtimeServiceDefinition,
  toPodSandboxStatusResponse,
  toRunPodSandboxResponse,
} from '../../src/cri/client.js';

// ---- protobuf wire format, written out by hand (https://protobuf.dev/programming-guides/encoding/) ----

/** 7 bits per byte, least significant first; the high bit says another byte follows. */
function varint(value: number | bigint): number[] {
  let rest = BigInt(value);
  const bytes: number[] = [];
  do {
    const low = Number(rest & 0x7fn);
    rest >>= 7n;
    bytes.push(rest > 0n ? low | 0x80 : low);
  } while (rest > 0n);
  return bytes;
}

const VARINT = 0;
const LENGTH_DELIMITED = 2;

/** Every field starts with its tag: field_number << 3 | wire_type. */
function tag(fieldNumber: number, wireType: number): number[] {
  return varint((fieldNumber << 3) | wireType);
}

function varintField(fieldNumber: number, value: number | bigint): number[] {
  return [...tag(fieldNumber, VARINT), ...varint(value)];
}

function stringField(fieldNumber: number, value: string): number[] {
  const utf8 = [...Buffer.from(value, 'utf8')];
  return [...tag(fieldNumber, LENGTH_DELIMITED), ...varint(utf8.length), ...utf8];
}

function messageField(fieldNumber: number, ...fields: number[][]): number[] {
  const body = fields.flat();
  return [...tag(fieldNumber, LENGTH_DELIMITED), ...varint(body.length), ...body];
}

/** A map<string, string> is a repeated message per entry with key = 1 and value = 2. */
function mapEntry(fieldNumber: number, key: string, value: string): number[] {
  return messageField(fieldNumber, stringField(1, key), stringField(2, value));
}

function method(name: RuntimeMethod): MethodDefinition<object, object> {
  const definition = runtimeServiceDefinition()[name];
  if (definition === undefined) throw new Error(`api.proto has no ${name}`);
  return definition;
}

function onTheWire(name: RuntimeMethod, request: object): number[] {
  return [...method(name).requestSerialize(request)];
}

function fromTheWire(name: RuntimeMethod, bytes: number[]): unknown {
  return method(name).responseDeserialize(Buffer.from(bytes));
}

const sandboxId = '5b1f0c3a9d8e7f60112233445566778899aabbccddeeff00112233445566778a';
const podUid = '6f1c2d3e-0a1b-4c2d-8e3f-405162738495';
const sandboxConfig: PodSandboxConfig = {
  metadata: { name: 'web-0', uid: podUid, namespace: 'default', attempt: 1 },
  hostname: 'web-0',
  logDirectory: `/var/log/pods/default_web-0_${podUid}`,
  labels: { app: 'web', 'podwire.io/lab': 'true' },
};

describe('the wire helpers of this test', () => {
  it('reproduce the examples of the protobuf encoding guide', () => {
    expect(varintField(1, 150)).toEqual([0x08, 0x96, 0x01]);
    expect(stringField(2, 'testing')).toEqual([
      0x12, 0x07, 0x74, 0x65, 0x73, 0x74, 0x69, 0x6e, 0x67,
    ]);
  });
});

describe('requests on the wire', () => {
  it('RunPodSandboxRequest carries the pod metadata, hostname, log directory, labels and handler', () => {
    const expected = [
      // The config is longer than 127 bytes: its length takes two varint bytes.
      ...messageField(
        1, // RunPodSandboxRequest.config
        messageField(
          1, // PodSandboxConfig.metadata
          stringField(1, 'web-0'), // PodSandboxMetadata.name
          stringField(2, podUid), // PodSandboxMetadata.uid
          stringField(3, 'default'), // PodSandboxMetadata.namespace
          varintField(4, 1), // PodSandboxMetadata.attempt
        ),
        stringField(2, 'web-0'), // PodSandboxConfig.hostname
        stringField(3, `/var/log/pods/default_web-0_${podUid}`), // PodSandboxConfig.log_directory
        mapEntry(6, 'app', 'web'), // PodSandboxConfig.labels
        mapEntry(6, 'podwire.io/lab', 'true'), // PodSandboxConfig.labels
      ),
      ...stringField(2, 'runc'), // RunPodSandboxRequest.runtime_handler
    ];
    expect(onTheWire('RunPodSandbox', runPodSandboxRequest(sandboxConfig, 'runc'))).toEqual(
      expected,
    );
  });

  it('RunPodSandboxRequest leaves out zero values, as the kubelet (Go) does', () => {
    const firstAttempt: PodSandboxConfig = {
      metadata: { name: 'web-0', uid: podUid, namespace: 'default', attempt: 0 },
      hostname: '',
      labels: {},
    };
    const expected = messageField(
      1, // RunPodSandboxRequest.config
      messageField(
        1, // PodSandboxConfig.metadata
        stringField(1, 'web-0'),
        stringField(2, podUid),
        stringField(3, 'default'),
      ),
    );
    expect(onTheWire('RunPodSandbox', runPodSandboxRequest(firstAttempt, ''))).toEqual(expected);
  });

  it('StopPodSandboxRequest is the sandbox id in field 1', () => {
    // tag 0x0a = field 1 (pod_sandbox_id) << 3 | 2 (length-delimited); length 64.
    const expected = [0x0a, 64, ...Buffer.from(sandboxId)];
    expect(onTheWire('StopPodSandbox', { podSandboxId: sandboxId })).toEqual(expected);
    expect(onTheWire('RemovePodSandbox', { podSandboxId: sandboxId })).toEqual(expected);
  });

  it('StopContainerRequest carries the grace period in seconds in field 2; RemoveContainerRequest only the id', () => {
    const id = [0x0a, 64, ...Buffer.from(sandboxId)];
    expect(onTheWire('StopContainer', { containerId: sandboxId, timeout: '30' })).toEqual([
      ...id,
      ...varintField(2, 30),
    ]);
    expect(onTheWire('RemoveContainer', { containerId: sandboxId })).toEqual(id);
  });

  it('the security profiles and resources of a DaemonSet container sit where containerd reads them', () => {
    const request = createContainerRequest(
      sandboxId,
      {
        metadata: { name: 'podwire', attempt: 0 },
        image: { image: 'podwire:1' },
        linux: {
          resources: { cpuShares: 102n, memoryLimitInBytes: 268435456n },
          securityContext: {
            capabilities: { addCapabilities: ['BPF'], dropCapabilities: ['ALL'] },
            readonlyRootfs: true,
            seccomp: { profileType: 'RuntimeDefault' },
            apparmor: { profileType: 'Unconfined' },
          },
        },
      },
      {
        metadata: { name: 'p', uid: 'u', namespace: 'n', attempt: 0 },
        linux: {
          securityContext: { seccomp: { profileType: 'Localhost', localhostRef: '/x.json' } },
        },
      },
    );
    const expected = [
      ...stringField(1, sandboxId), // CreateContainerRequest.pod_sandbox_id
      ...messageField(
        2, // CreateContainerRequest.config
        messageField(1, stringField(1, 'podwire')), // ContainerConfig.metadata
        messageField(2, stringField(1, 'podwire:1')), // ContainerConfig.image
        messageField(
          15, // ContainerConfig.linux
          messageField(
            1, // LinuxContainerConfig.resources
            varintField(3, 102), // LinuxContainerResources.cpu_shares
            varintField(4, 268435456), // LinuxContainerResources.memory_limit_in_bytes
          ),
          messageField(
            2, // LinuxContainerConfig.security_context
            messageField(1, stringField(1, 'BPF'), stringField(2, 'ALL')), // capabilities
            varintField(7, 1), // readonly_rootfs
            messageField(15), // seccomp: RuntimeDefault is the zero value, but the message is there
            messageField(16, varintField(1, 1)), // apparmor: Unconfined
          ),
        ),
      ),
      ...messageField(
        3, // CreateContainerRequest.sandbox_config
        messageField(1, stringField(1, 'p'), stringField(2, 'u'), stringField(3, 'n')),
        messageField(
          8, // PodSandboxConfig.linux
          messageField(
            2, // LinuxPodSandboxConfig.security_context
            messageField(9, varintField(1, 2), stringField(2, '/x.json')), // seccomp: Localhost
          ),
        ),
      ),
    ];
    expect(onTheWire('CreateContainer', request)).toEqual(expected);
  });

  it('PodSandboxStatusRequest asks for verbose info in field 2', () => {
    // tag 0x10 = field 2 (verbose) << 3 | 0 (varint); true = 1.
    const expected = [0x0a, 64, ...Buffer.from(sandboxId), 0x10, 0x01];
    expect(onTheWire('PodSandboxStatus', podSandboxStatusRequest(sandboxId, true))).toEqual(
      expected,
    );
  });
});

describe('responses from the wire', () => {
  it('RunPodSandboxResponse gives the sandbox id', () => {
    const response = fromTheWire('RunPodSandbox', stringField(1, sandboxId)); // pod_sandbox_id
    expect(toRunPodSandboxResponse(response)).toEqual({ podSandboxId: sandboxId });
  });

  it('PodSandboxStatusResponse gives the state, creation time, pod IPs, namespaces and info', () => {
    const createdAt = 1_722_000_000_123_456_789n; // beyond 2^53: must not pass through a double
    const info = '{"pid":4242,"runtimeSpec":{"linux":{"namespaces":[{"type":"network"}]}}}';
    const bytes = [
      ...messageField(
        1, // PodSandboxStatusResponse.status
        stringField(1, sandboxId), // PodSandboxStatus.id
        messageField(
          2, // PodSandboxStatus.metadata
          stringField(1, 'web-0'),
          stringField(2, podUid),
          stringField(3, 'default'),
          varintField(4, 1),
        ),
        // PodSandboxStatus.state = 3 is SANDBOX_READY (0): a Go runtime does not send it.
        varintField(4, createdAt), // PodSandboxStatus.created_at
        messageField(
          5, // PodSandboxStatus.network
          stringField(1, '10.244.77.5'), // PodSandboxNetworkStatus.ip
          messageField(2, stringField(1, 'fd00:77::5')), // .additional_ips, PodIP.ip
        ),
        messageField(
          6, // PodSandboxStatus.linux
          messageField(
            1, // LinuxPodSandboxStatus.namespaces
            messageField(
              2, // Namespace.options
              varintField(2, 1), // NamespaceOption.pid = CONTAINER
            ),
          ),
        ),
        mapEntry(7, 'app', 'web'), // PodSandboxStatus.labels
        stringField(9, 'runc'), // PodSandboxStatus.runtime_handler
      ),
      ...mapEntry(2, 'info', info), // PodSandboxStatusResponse.info
    ];
    const response = toPodSandboxStatusResponse(fromTheWire('PodSandboxStatus', bytes));
    expect(response.status).toEqual({
      id: sandboxId,
      metadata: { name: 'web-0', uid: podUid, namespace: 'default', attempt: 1 },
      state: 'SANDBOX_READY',
      createdAt,
      network: { ip: '10.244.77.5', additionalIps: ['fd00:77::5'] },
      linux: {
        namespaces: { options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD', targetId: '' } },
      },
      labels: { app: 'web' },
      annotations: {},
      runtimeHandler: 'runc',
    });
    expect(response.info).toEqual({ info });
  });

  it('a sandbox state this schema does not know reads as not ready', () => {
    const bytes = messageField(1, stringField(1, sandboxId), varintField(3, 7)); // state = 7
    const response = toPodSandboxStatusResponse(fromTheWire('PodSandboxStatus', bytes));
    expect(response.status?.state).toBe('SANDBOX_NOTREADY');
  });
});

// ---- a runtime in this process, on a unix socket ---------------------------------------------------

type Handler = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<object>) => void;

function answer(response: object): Handler {
  return (_call, callback) => callback(null, response);
}

function fail(code: status, details: string): Handler {
  return (_call, callback) => callback({ code, details }, null);
}

const neverAnswer: Handler = () => {};

interface FakeRuntime {
  /** Each request the runtime got, as the runtime decoded it. */
  received: { method: string; request: unknown }[];
  stop(): void;
}

async function startFakeRuntime(
  socketPath: string,
  handlers: Partial<Record<RuntimeMethod, Handler>>,
): Promise<FakeRuntime> {
  const received: FakeRuntime['received'] = [];
  const implementation: UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(handlers)) {
    implementation[name] = (
      call: ServerUnaryCall<unknown, unknown>,
      callback: sendUnaryData<object>,
    ) => {
      received.push({ method: name, request: call.request });
      handler(call, callback);
    };
  }
  const server = new Server();
  server.addService(runtimeServiceDefinition(), implementation);
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socketPath}`, ServerCredentials.createInsecure(), (error) =>
      error ? reject(error) : resolve(),
    ),
  );
  return { received, stop: () => server.forceShutdown() };
}

const containerd = {
  version: '0.1.0',
  runtimeName: 'containerd',
  runtimeVersion: '1.6.20~ds1',
  runtimeApiVersion: 'v1',
};

async function rejection(promise: Promise<unknown>): Promise<CriError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(error instanceof CriError)) throw new Error(`expected a CriError, got ${String(error)}`);
  return error;
}

describe('CriClient against a runtime on a unix socket', () => {
  let dir: string;
  let socketPath: string;
  const cleanups: (() => void)[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'podwire-cri-'));
    socketPath = join(dir, 'containerd.sock');
  });

  afterEach(() => {
    for (const cleanup of cleanups.splice(0).reverse()) cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  async function runtime(handlers: Partial<Record<RuntimeMethod, Handler>>): Promise<FakeRuntime> {
    const fake = await startFakeRuntime(socketPath, handlers);
    cleanups.push(() => fake.stop());
    return fake;
  }

  function connect(endpoint: string, options?: { timeoutMs?: number }): CriClient {
    const client = CriClient.connect(endpoint, options);
    cleanups.push(() => client.close());
    return client;
  }

  it('runs a sandbox, reads its status and stops it, sending what the kubelet would', async () => {
    const fake = await runtime({
      Version: answer(containerd),
      RunPodSandbox: answer({ podSandboxId: sandboxId }),
      PodSandboxStatus: answer({
        status: {
          id: sandboxId,
          metadata: sandboxConfig.metadata,
          state: 'SANDBOX_READY',
          createdAt: '1722000000123456789',
          network: { ip: '10.244.77.5', additionalIps: [] },
          labels: sandboxConfig.labels,
        },
        info: { info: '{"pid":4242}' },
      }),
      StopPodSandbox: answer({}),
    });
    const client = connect(socketPath);
    expect(client.endpoint).toBe(`unix://${socketPath}`);

    expect(await client.version()).toEqual(containerd);
    expect(await client.runPodSandbox(sandboxConfig, { runtimeHandler: 'runc' })).toBe(sandboxId);
    const { status: sandbox, info } = await client.podSandboxStatus(sandboxId, { verbose: true });
    await client.stopPodSandbox(sandboxId);

    expect(sandbox.state).toBe('SANDBOX_READY');
    expect(sandbox.network?.ip).toBe('10.244.77.5');
    expect(sandbox.createdAt).toBe(1_722_000_000_123_456_789n);
    expect(info).toEqual({ info: '{"pid":4242}' });

    expect(fake.received.map((call) => call.method)).toEqual([
      'Version',
      'RunPodSandbox',
      'PodSandboxStatus',
      'StopPodSandbox',
    ]);
    const [versionRequest, runRequest, statusRequest, stopRequest] = fake.received.map(
      (call) => call.request,
    );
    expect(versionRequest).toMatchObject({ version: '0.1.0' });
    expect(runRequest).toMatchObject({
      config: {
        metadata: { name: 'web-0', uid: podUid, namespace: 'default', attempt: 1 },
        hostname: 'web-0',
        logDirectory: `/var/log/pods/default_web-0_${podUid}`,
        labels: { app: 'web', 'podwire.io/lab': 'true' },
      },
      runtimeHandler: 'runc',
    });
    expect(statusRequest).toEqual({ podSandboxId: sandboxId, verbose: true });
    expect(stopRequest).toEqual({ podSandboxId: sandboxId });
  });

  it('creates and starts a container with the sandbox config it was run with', async () => {
    const fake = await runtime({
      CreateContainer: answer({ containerId: 'c0ffee' }),
      StartContainer: answer({}),
    });
    const client = connect(`unix://${socketPath}`);
    const containerId = await client.createContainer(
      sandboxId,
      {
        metadata: { name: 'app', attempt: 0 },
        image: { image: 'localhost/podwire/pause:lab' },
        command: ['/pause'],
        envs: [{ key: 'PODWIRE', value: '1' }],
        logPath: 'app/0.log',
      },
      sandboxConfig,
    );
    await client.startContainer(containerId);

    expect(containerId).toBe('c0ffee');
    const [create, start] = fake.received.map((call) => call.request);
    expect(create).toMatchObject({
      podSandboxId: sandboxId,
      config: {
        metadata: { name: 'app', attempt: 0 },
        image: { image: 'localhost/podwire/pause:lab' },
        command: ['/pause'],
        envs: [{ key: 'PODWIRE', value: '1' }],
        logPath: 'app/0.log',
      },
      sandboxConfig: { metadata: sandboxConfig.metadata, labels: sandboxConfig.labels },
    });
    expect(start).toEqual({ containerId: 'c0ffee' });
  });

  it('keeps a filter for ready sandboxes even though READY is the zero state', async () => {
    const fake = await runtime({
      ListPodSandbox: answer({
        items: [{ id: sandboxId, metadata: sandboxConfig.metadata, createdAt: '1' }],
      }),
    });
    const client = connect(socketPath);
    const sandboxes = await client.listPodSandbox({
      state: 'SANDBOX_READY',
      labelSelector: { app: 'web' },
    });

    expect(sandboxes.map((sandbox) => [sandbox.id, sandbox.state, sandbox.createdAt])).toEqual([
      [sandboxId, 'SANDBOX_READY', 1n],
    ]);
    expect(fake.received[0]?.request).toMatchObject({
      filter: { state: { state: 'SANDBOX_READY' }, labelSelector: { app: 'web' } },
    });
  });

  it("reports the runtime's own message when the sandbox's network cannot be set up", async () => {
    const details =
      'failed to setup network for sandbox "5b1f0c3a": plugin type="bridge" failed (add): ' +
      'failed to allocate for range 0: no IP addresses available in range set: 10.244.77.1-10.244.77.254';
    await runtime({ RunPodSandbox: fail(status.UNKNOWN, details) });
    const client = connect(socketPath);

    const error = await rejection(client.runPodSandbox(sandboxConfig));
    expect(error.method).toBe('RunPodSandbox');
    expect(error.code).toBe(status.UNKNOWN);
    expect(error.codeName).toBe('UNKNOWN');
    expect(error.details).toBe(details);
    expect(error.message).toBe(`CRI RunPodSandbox failed (UNKNOWN): ${details}`);
  });

  it('names the endpoint and says what to do when no runtime listens there', async () => {
    const client = connect(socketPath);

    const error = await rejection(client.version());
    expect(error.code).toBe(status.UNAVAILABLE);
    expect(error.message).toContain(`unix://${socketPath}`);
    expect(error.message).toContain(`ENOENT`);
    expect(error.message).toContain('podwire lab up');
    expect(error.message).not.toContain('\n');
  });

  it('gives up on a call the runtime never answers when its deadline passes', async () => {
    await runtime({ Version: neverAnswer, RunPodSandbox: neverAnswer });
    const client = connect(socketPath, { timeoutMs: 200 });

    const started = Date.now();
    const version = await rejection(client.version());
    expect(version.code).toBe(status.DEADLINE_EXCEEDED);
    expect(version.message).toBe(
      `CRI Version failed (DEADLINE_EXCEEDED): no answer from unix://${socketPath} within 200 ms`,
    );
    const run = await rejection(client.runPodSandbox(sandboxConfig, { timeoutMs: 300 }));
    expect(run.message).toContain('within 300 ms');
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('waits for a runtime that comes up after the client started asking', async () => {
    const client = connect(socketPath);
    const ready = client.waitReady(10_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await runtime({ Version: answer(containerd) });

    expect(await ready).toEqual(containerd);
  });

  it('stops waiting at the deadline and says why the runtime did not answer', async () => {
    const client = connect(socketPath);

    const started = Date.now();
    const error = await rejection(client.waitReady(400));
    expect(Date.now() - started).toBeGreaterThanOrEqual(390);
    expect(error.method).toBe('Version');
    expect(error.code).toBe(status.UNAVAILABLE);
    expect(error.message).toContain(`unix://${socketPath} did not answer within 400 ms`);
    expect(error.message).toContain('ENOENT');
  });
});
