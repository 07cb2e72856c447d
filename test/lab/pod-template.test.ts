// A pod template as the kubelet would send it to the runtime: what `podwire lab daemonset up` asks of the lab's
// containerd must be what the manifest says (the template here is written for the test, in the manifest's shape).
import { describe, expect, it } from 'vitest';
import {
  bytes,
  criPod,
  milliCpu,
  type PodIdentity,
  type PodTemplate,
  PodTemplateError,
} from '../../src/lab/pod-template.js';

const pod: PodIdentity = {
  name: 'podwire-lab',
  namespace: 'podwire',
  uid: '0b9c7d2e-1f3a-4b5c-8d6e-7f8091a2b3c4',
  nodeName: 'node-1',
  hostIp: '192.0.2.10',
  logDirectory: '/var/lib/podwire-lab/pods/podwire_podwire-lab_uid',
  cgroupParent: '/podwire-lab/pod0b9c',
  emptyDirRoot: '/var/lib/podwire-lab/volumes/uid',
};

function template(): PodTemplate {
  return {
    metadata: { labels: { 'app.kubernetes.io/name': 'podwire' }, annotations: { note: 'x' } },
    spec: {
      hostPID: true,
      securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
      volumes: [
        { name: 'tracefs', hostPath: { path: '/sys/kernel/tracing', type: 'Directory' } },
        { name: 'run', hostPath: { path: '/run/podwire', type: 'DirectoryOrCreate' } },
        { name: 'tmp', emptyDir: {} },
      ],
      containers: [
        {
          name: 'podwire',
          image: 'podwire:0.1.0',
          args: ['trace', '--json'],
          env: [
            { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
            { name: 'OTEL_SERVICE_NAME', value: 'podwire' },
          ],
          volumeMounts: [
            { name: 'tracefs', mountPath: '/sys/kernel/tracing' },
            { name: 'run', mountPath: '/run/podwire', mountPropagation: 'HostToContainer' },
            { name: 'tmp', mountPath: '/tmp', readOnly: false },
          ],
          resources: {
            requests: { cpu: '100m', memory: '128Mi' },
            limits: { cpu: '500m', memory: '256Mi' },
          },
          securityContext: {
            capabilities: { drop: ['ALL'], add: ['BPF', 'PERFMON', 'SYS_ADMIN'] },
            readOnlyRootFilesystem: true,
            allowPrivilegeEscalation: false,
            runAsUser: 0,
            appArmorProfile: { type: 'Unconfined' },
          },
        },
      ],
    },
  };
}

describe('a pod template turned into CRI requests', () => {
  it('runs in the node PID namespace, its own network, with the labels the kubelet adds', () => {
    const { sandbox } = criPod(template(), pod);
    expect(sandbox.metadata).toEqual({
      name: pod.name,
      namespace: pod.namespace,
      uid: pod.uid,
      attempt: 0,
    });
    expect(sandbox.hostname).toBe('podwire-lab');
    expect(sandbox.linux?.securityContext?.namespaceOptions).toEqual({
      network: 'POD',
      pid: 'NODE',
      ipc: 'POD',
    });
    expect(sandbox.linux?.securityContext?.privileged).toBe(false);
    expect(sandbox.linux?.securityContext?.seccomp).toEqual({ profileType: 'RuntimeDefault' });
    expect(sandbox.labels).toMatchObject({
      'app.kubernetes.io/name': 'podwire',
      'io.kubernetes.pod.uid': pod.uid,
      'io.kubernetes.pod.namespace': 'podwire',
    });
    expect(sandbox.annotations).toMatchObject({ note: 'x' });
  });

  it('gives the container exactly the manifest capabilities, read-only root, no privilege escalation, AppArmor unconfined', () => {
    const [container] = criPod(template(), pod).containers;
    const security = container?.linux?.securityContext;
    expect(security?.capabilities).toEqual({
      addCapabilities: ['BPF', 'PERFMON', 'SYS_ADMIN'],
      dropCapabilities: ['ALL'],
    });
    expect(security?.privileged).toBe(false);
    expect(security?.readonlyRootfs).toBe(true);
    expect(security?.noNewPrivs).toBe(true);
    expect(security?.runAsUser).toBe(0n);
    expect(security?.namespaceOptions?.pid).toBe('NODE');
    // The pod's seccomp profile applies to a container that names none.
    expect(security?.seccomp).toEqual({ profileType: 'RuntimeDefault' });
    expect(security?.apparmor).toEqual({ profileType: 'Unconfined' });
  });

  it('fills the downward API, mounts host paths and emptyDirs, and makes the directories that must exist', () => {
    const { containers, directories } = criPod(template(), pod);
    const [container] = containers;
    expect(container?.args).toEqual(['trace', '--json']);
    expect(container?.envs).toEqual([
      { key: 'NODE_NAME', value: 'node-1' },
      { key: 'OTEL_SERVICE_NAME', value: 'podwire' },
    ]);
    expect(container?.mounts).toEqual([
      {
        containerPath: '/sys/kernel/tracing',
        hostPath: '/sys/kernel/tracing',
        readonly: false,
        propagation: 'PROPAGATION_PRIVATE',
      },
      {
        containerPath: '/run/podwire',
        hostPath: '/run/podwire',
        readonly: false,
        propagation: 'PROPAGATION_HOST_TO_CONTAINER',
      },
      {
        containerPath: '/tmp',
        hostPath: `${pod.emptyDirRoot}/tmp`,
        readonly: false,
        propagation: 'PROPAGATION_PRIVATE',
      },
    ]);
    expect(directories.map((d) => d.path)).toEqual(['/run/podwire', `${pod.emptyDirRoot}/tmp`]);
    expect(container?.logPath).toBe('podwire/0.log');
  });

  it('turns requests and limits into the cgroup values the kubelet computes', () => {
    const resources = criPod(template(), pod).containers[0]?.linux?.resources;
    // 100m → 102 shares; a 500m limit → 50 ms of every 100 ms; 256Mi in bytes.
    expect(resources).toEqual({
      cpuShares: 102n,
      cpuPeriod: 100000n,
      cpuQuota: 50000n,
      memoryLimitInBytes: 268435456n,
    });
    expect(milliCpu('2')).toBe(2000);
    expect(milliCpu(0.25)).toBe(250);
    expect(bytes('1G')).toBe(1e9);
    expect(bytes('64Ki')).toBe(65536);
  });

  it('makes the sandbox privileged when a container is (the privileged overlay)', () => {
    const privileged = template();
    const container = privileged.spec.containers[0];
    if (container) container.securityContext = { privileged: true };
    const { sandbox, containers } = criPod(privileged, pod);
    expect(sandbox.linux?.securityContext?.privileged).toBe(true);
    expect(containers[0]?.linux?.securityContext?.privileged).toBe(true);
  });

  it('refuses, naming it, what the lab cannot honour rather than dropping it', () => {
    const cases: [string, (t: PodTemplate) => void, RegExp][] = [
      [
        'a secret volume',
        (t) => t.spec.volumes?.push({ name: 's', secret: { secretName: 'x' } }),
        /secret volume \(s\)/,
      ],
      [
        'a downward field',
        (t) =>
          t.spec.containers[0]?.env?.push({
            name: 'IP',
            valueFrom: { fieldRef: { fieldPath: 'status.podIP' } },
          }),
        /status\.podIP/,
      ],
      [
        'a liveness probe',
        (t) => {
          const c = t.spec.containers[0];
          if (c) c.livenessProbe = {};
        },
        /livenessProbe in container podwire/,
      ],
      [
        'a GPU',
        (t) => {
          const c = t.spec.containers[0];
          if (c?.resources?.limits) c.resources.limits['nvidia.com/gpu'] = 1;
        },
        /resource nvidia\.com\/gpu/,
      ],
      [
        'a mount of no volume',
        (t) => t.spec.containers[0]?.volumeMounts?.push({ name: 'nope', mountPath: '/x' }),
        /volumeMount nope names no volume/,
      ],
      [
        'root with runAsNonRoot',
        (t) => {
          t.spec.securityContext = { runAsNonRoot: true };
        },
        /runAsNonRoot with runAsUser 0/,
      ],
    ];
    for (const [what, change, message] of cases) {
      const t = template();
      if (what === 'a secret volume')
        t.spec.containers[0]?.volumeMounts?.push({ name: 's', mountPath: '/s' });
      change(t);
      expect(() => criPod(t, pod), what).toThrow(PodTemplateError);
      expect(() => criPod(t, pod), what).toThrow(message);
    }
  });
});
