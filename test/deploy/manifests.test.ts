// The DaemonSet manifests as `kubectl apply -k` reads them: valid against the Kubernetes schemas, and what an SRE
// checks before letting a tracer onto every node.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { DaemonSet, type IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { type IService, Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { afterEach, describe, expect, it } from 'vitest';
import { registerTrace } from '../../src/cli/trace.js';
import {
  daemonSetPodTemplate,
  type KubeObject,
  loadKustomization,
  manifestDir,
} from '../../src/deploy/manifests.js';
import { parseListenAddress } from '../../src/otel/telemetry.js';

const repoRoot = join(import.meta.dirname, '..', '..');
const version: string = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version;

/** The schema of each kind the manifests may hold; a kind without one fails the test instead of passing unchecked. */
const models: Record<string, { validate(object: KubeObject): void }> = {
  'v1/Namespace': { validate: (object) => new Namespace(object as never).validate() },
  'v1/ServiceAccount': { validate: (object) => new ServiceAccount(object as never).validate() },
  'v1/Service': { validate: (object) => new Service(object as never).validate() },
  'apps/v1/DaemonSet': { validate: (object) => new DaemonSet(object as never).validate() },
};

function validate(object: KubeObject): void {
  const model = models[`${object.apiVersion}/${object.kind}`];
  if (!model) throw new Error(`no schema for ${object.apiVersion} ${object.kind} in this test`);
  model.validate(object);
}

const variants = { base: manifestDir('base'), privileged: manifestDir('privileged') };

/** The one object of KIND, typed as its schema (which the first tests validate it against). */
function find<T = KubeObject>(objects: KubeObject[], kind: string): T & KubeObject {
  const found = objects.filter((object) => object.kind === kind);
  expect(found, `one ${kind}`).toHaveLength(1);
  return found[0] as unknown as T & KubeObject;
}

/** The long flags `podwire trace` takes, from the command itself. */
function traceFlags(): Set<string> {
  const program = new Command('podwire');
  registerTrace(program);
  const trace = program.commands.find((command) => command.name() === 'trace');
  return new Set(trace?.options.map((option) => option.long ?? '') ?? []);
}

/** The largest figure of the README's stop-time row (the old median, the new maximum, bpftrace's own detach), in seconds. */
function measuredStopSeconds(): number {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const row = readme.split('\n').find((line) => line.includes('SIGINT/SIGTERM to exit'));
  if (!row) throw new Error("README has no stop-time row ('SIGINT/SIGTERM to exit')");
  const seconds = [...row.matchAll(/(\d+(?:\.\d+)?) s\b/g)].map((match) => Number(match[1]));
  expect(seconds.length).toBeGreaterThan(0);
  return Math.max(...seconds);
}

describe.each(Object.entries(variants))('deploy/kubernetes %s', (_variant, dir) => {
  const objects = loadKustomization(dir);

  it('holds a Namespace, a ServiceAccount, the DaemonSet and the metrics Service, all in namespace podwire', () => {
    expect(objects.map((object) => object.kind).sort()).toEqual([
      'DaemonSet',
      'Namespace',
      'Service',
      'ServiceAccount',
    ]);
    expect(find(objects, 'Namespace').metadata.name).toBe('podwire');
    for (const object of objects.filter((object) => object.kind !== 'Namespace'))
      expect(object.metadata.namespace, `${object.kind} ${object.metadata.name}`).toBe('podwire');
  });

  it('validates every object against the Kubernetes schemas', () => {
    for (const object of objects) expect(() => validate(object)).not.toThrow();
  });
});

describe('the base DaemonSet', () => {
  const objects = loadKustomization(variants.base);
  const template = daemonSetPodTemplate(variants.base);
  const pod = template.spec;
  const container = pod?.containers[0];
  const security = container?.securityContext;
  const args = container?.args ?? [];
  const env = new Map(container?.env?.map((variable) => [variable.name, variable]));

  it('runs one container, not privileged, every capability dropped but a named few', () => {
    expect(pod?.containers).toHaveLength(1);
    expect(pod?.initContainers ?? []).toHaveLength(0);
    expect(security?.privileged).toBe(false);
    expect(security?.capabilities?.drop).toEqual(['ALL']);
    const add = security?.capabilities?.add ?? [];
    expect(add.length).toBeGreaterThan(0);
    expect(new Set(add).size).toBe(add.length);
    // Kubernetes names capabilities without CAP_; the runtime adds it.
    for (const capability of add) expect(capability).toMatch(/^(?!CAP_)[A-Z_]+$/);
    // The API server refuses allowPrivilegeEscalation: false together with SYS_ADMIN; the schema does not say so.
    if (add.includes('SYS_ADMIN')) expect(security?.allowPrivilegeEscalation).not.toBe(false);
  });

  it("shares only the host's PID namespace, with a read-only root filesystem, as root for bpftrace", () => {
    expect(pod?.hostPID).toBe(true);
    expect(pod?.hostNetwork ?? false).toBe(false);
    expect(pod?.hostIPC ?? false).toBe(false);
    expect(security?.readOnlyRootFilesystem).toBe(true);
    expect(pod?.securityContext?.runAsUser).toBe(0);
    expect(pod?.securityContext?.seccompProfile?.type).toBe('RuntimeDefault');
    expect(pod?.securityContext?.appArmorProfile?.type).toBe('Unconfined');
    expect(pod?.automountServiceAccountToken).toBe(false);
    const serviceAccount = find(objects, 'ServiceAccount');
    expect(pod?.serviceAccountName).toBe(serviceAccount.metadata.name);
  });

  it('mounts the host tracefs read-write and no other host path but the live-view socket directory', () => {
    const volumes = new Map(pod?.volumes?.map((volume) => [volume.name, volume]));
    const mounts = container?.volumeMounts ?? [];
    for (const mount of mounts) expect(volumes.has(mount.name), mount.name).toBe(true);
    const hostPaths = (pod?.volumes ?? []).flatMap((volume) =>
      volume.hostPath ? [volume.hostPath.path] : [],
    );
    expect(hostPaths.sort()).toEqual(['/run/podwire', '/sys/kernel/tracing']);
    const tracefs = mounts.find((mount) => mount.mountPath === '/sys/kernel/tracing');
    expect(volumes.get(tracefs?.name ?? '')?.hostPath?.path).toBe('/sys/kernel/tracing');
    expect(tracefs?.readOnly ?? false).toBe(false);
    // A read-only root filesystem still needs a writable /tmp, and not on the host.
    const tmp = mounts.find((mount) => mount.mountPath === '/tmp');
    expect(volumes.get(tmp?.name ?? '')?.emptyDir).toBeDefined();
  });

  it('passes podwire trace only flags it has: NDJSON on stdout, OTLP from the environment, metrics on the pod address', () => {
    const flags = traceFlags();
    for (const arg of args.filter((arg) => arg.startsWith('-')))
      expect(flags.has(arg), `${arg} is a podwire trace flag`).toBe(true);
    expect(args).toContain('--json');
    // --otlp without an endpoint: OTEL_EXPORTER_OTLP_ENDPOINT decides.
    const otlp = args.indexOf('--otlp');
    expect(otlp).toBeGreaterThanOrEqual(0);
    expect(args[otlp + 1] ?? '--').toMatch(/^--/);
    const metrics = parseListenAddress(args[args.indexOf('--metrics') + 1] ?? '');
    if ('error' in metrics) throw new Error(metrics.error);
    // A bare port or 127.0.0.1 would be out of reach of the Service and of Prometheus.
    expect(metrics.host).toBe('0.0.0.0');
    const port = container?.ports?.find((declared) => declared.name === 'metrics');
    expect(port?.containerPort).toBe(metrics.port);
    const service = find<IService>(objects, 'Service');
    expect(service.spec?.ports).toEqual([
      expect.objectContaining({ name: 'metrics', port: metrics.port, targetPort: 'metrics' }),
    ]);
    expect(template.metadata?.labels).toMatchObject(service.spec?.selector ?? { none: 'none' });
    expect(container?.readinessProbe?.httpGet).toMatchObject({ path: '/ready', port: 'metrics' });
  });

  it('names its node from the downward API and configures the OTLP exporter', () => {
    expect(env.get('NODE_NAME')?.valueFrom?.fieldRef?.fieldPath).toBe('spec.nodeName');
    const endpoint = new URL(env.get('OTEL_EXPORTER_OTLP_ENDPOINT')?.value ?? '');
    expect(['http:', 'https:']).toContain(endpoint.protocol);
    expect(['http/protobuf', 'http/json', 'grpc']).toContain(
      env.get('OTEL_EXPORTER_OTLP_PROTOCOL')?.value,
    );
    expect(env.get('OTEL_SERVICE_NAME')?.value).toBe('podwire');
    const attributes = Object.fromEntries(
      (env.get('OTEL_RESOURCE_ATTRIBUTES')?.value ?? '').split(',').map((pair) => pair.split('=')),
    );
    expect(attributes['service.version']).toBe(version);
  });

  it('runs the image of this version, on every node, with resources, stopping within its grace period', () => {
    expect(container?.image).toBe(`podwire:${version}`);
    expect(container?.imagePullPolicy).toBe('IfNotPresent');
    expect(pod?.tolerations).toContainEqual({ operator: 'Exists' });
    const daemonSet = find<IDaemonSet>(objects, 'DaemonSet');
    expect(template.metadata?.labels).toMatchObject(
      daemonSet.spec?.selector.matchLabels ?? { none: 'none' },
    );
    expect(container?.resources?.requests?.cpu).toBeDefined();
    expect(container?.resources?.requests?.memory).toBeDefined();
    expect(mebibytes(container?.resources?.limits?.memory)).toBeGreaterThanOrEqual(
      mebibytes(container?.resources?.requests?.memory),
    );
    expect(pod?.terminationGracePeriodSeconds).toBeGreaterThan(measuredStopSeconds());
  });
});

describe('the privileged overlay', () => {
  const base = daemonSetPodTemplate(variants.base);
  const privileged = daemonSetPodTemplate(variants.privileged);

  it('is privileged and differs from the base in nothing else', () => {
    const container = privileged.spec?.containers[0];
    expect(container?.securityContext?.privileged).toBe(true);
    expect(container?.securityContext?.capabilities).toBeUndefined();
    const baseContainer = base.spec?.containers[0];
    expect({
      ...privileged,
      spec: {
        ...privileged.spec,
        containers: [
          {
            ...container,
            securityContext: {
              ...container?.securityContext,
              privileged: false,
              capabilities: baseContainer?.securityContext?.capabilities,
            },
          },
        ],
      },
    }).toEqual(base);
  });
});

describe('schema validation', () => {
  /** A copy of the base DaemonSet with the field at PATH set to VALUE. */
  function broken(path: string, value: unknown): KubeObject {
    const copy = structuredClone(find(loadKustomization(variants.base), 'DaemonSet'));
    const keys = path.split('.');
    const last = keys.pop() ?? '';
    let at = copy as Record<string, unknown>;
    for (const key of keys) at = at[key] as Record<string, unknown>;
    at[last] = value;
    return copy;
  }

  it('rejects a field of the wrong type, naming it', () => {
    expect(() => validate(broken('spec.template.spec.hostPID', 'yes'))).toThrow(
      /\/spec\/template\/spec\/hostPID must be boolean/,
    );
  });

  it('rejects a capability list written as one string, naming it', () => {
    const path = 'spec.template.spec.containers.0.securityContext.capabilities.add';
    expect(() => validate(broken(path, 'SYS_ADMIN'))).toThrow(
      /containers\/0\/securityContext\/capabilities\/add must be array/,
    );
  });
});

describe('the manifest loader', () => {
  let scratch = '';
  afterEach(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    scratch = '';
  });

  function kustomization(text: string): string {
    scratch = mkdtempSync(join(tmpdir(), 'podwire-manifests-'));
    writeFileSync(join(scratch, 'kustomization.yaml'), text);
    writeFileSync(
      join(scratch, 'pod.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one\ndata:\n  a: "1"\n',
    );
    return scratch;
  }

  const header = 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n';

  it('refuses a kustomize feature it does not implement, naming it', () => {
    const dir = kustomization(`${header}resources: [pod.yaml]\ncommonLabels: {a: b}\n`);
    expect(() => loadKustomization(dir)).toThrow(/kustomize's commonLabels is not supported/);
  });

  it('refuses a JSON 6902 op it does not implement, naming it', () => {
    const dir = kustomization(
      `${header}resources: [pod.yaml]\npatches:\n  - target: {kind: ConfigMap}\n    patch: '[{op: move, from: /data/a, path: /data/b}]'\n`,
    );
    expect(() => loadKustomization(dir)).toThrow(/op move is not supported/);
  });

  it('refuses a patch whose target matches nothing, and one on a field that is not there', () => {
    const none = kustomization(
      `${header}resources: [pod.yaml]\npatches:\n  - target: {kind: Secret}\n    patch: '[{op: remove, path: /data}]'\n`,
    );
    expect(() => loadKustomization(none)).toThrow(/matches no object/);
    rmSync(none, { recursive: true });
    const missing = kustomization(
      `${header}resources: [pod.yaml]\npatches:\n  - target: {kind: ConfigMap}\n    patch: '[{op: replace, path: /data/b, value: "2"}]'\n`,
    );
    expect(() => loadKustomization(missing)).toThrow(/replace \/data\/b: there is no such field/);
  });

  it('refuses a Namespace object that is not the namespace the objects are put in', () => {
    const dir = kustomization(`${header}namespace: ns\nresources: [pod.yaml, namespace.yaml]\n`);
    writeFileSync(
      join(dir, 'namespace.yaml'),
      'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: other\n',
    );
    expect(() => loadKustomization(dir)).toThrow(/namespace ns but the Namespace object is other/);
  });

  it('says in one line which file is not YAML', () => {
    const dir = kustomization(`${header}resources: [pod.yaml]\n`);
    writeFileSync(
      join(dir, 'pod.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [one\n',
    );
    const load = () => loadKustomization(dir);
    expect(load).toThrow(/pod\.yaml is not valid YAML: \S/);
    expect(load).not.toThrow(/\n/);
  });

  it('applies add, replace and remove, and sets the namespace', () => {
    const dir = kustomization(
      `${header}namespace: ns\nresources: [pod.yaml]\npatches:\n  - target: {version: v1, kind: ConfigMap, name: one}\n    patch: |-\n      - {op: add, path: /data/b~1c, value: "2"}\n      - {op: replace, path: /data/a, value: "3"}\n      - {op: add, path: /metadata/labels, value: {x: y}}\n      - {op: remove, path: /metadata/labels/x}\n`,
    );
    expect(loadKustomization(dir)).toEqual([
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'one', namespace: 'ns', labels: {} },
        data: { a: '3', 'b/c': '2' },
      },
    ]);
  });
});

/** A memory quantity (Mi or Gi) in MiB. */
function mebibytes(quantity: string | number | undefined): number {
  const match = /^(\d+)(Mi|Gi)$/.exec(String(quantity));
  if (!match) throw new Error(`memory ${quantity} is not in Mi or Gi`);
  return Number(match[1]) * (match[2] === 'Gi' ? 1024 : 1);
}
