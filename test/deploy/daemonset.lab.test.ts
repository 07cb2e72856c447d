// podwire's DaemonSet on the lab, run from deploy/kubernetes through CRI as a kubelet runs it (`podwire lab daemonset
// up`): the podwire in the pod, whose root is the image's, traces the pods created after it exactly as on the node,
// and its stop leaves nothing in tracefs.
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import type { CreatedPod } from '../../src/lab/pods.js';
import { daemonSetLines, podwireInPod } from '../lab/daemonset.js';
import { freePort, isRoot, labStatus, noLabUp, podwire, rootReason, running } from '../lab/node.js';
import {
  createPods,
  deletePods,
  inexact,
  labHandshakeSteps,
  labTeardownSteps,
} from '../lab/traced.js';
import { type OtlpReceiver, startOtlpReceiver } from '../otel/otlp-receiver.js';
import { until } from '../until.js';

const tracefs = '/sys/kernel/tracing';

describe.skipIf(!isRoot)(
  `podwire's DaemonSet on the lab${isRoot ? '' : ` (skipped: ${rootReason})`}`,
  () => {
    let pods: CreatedPod[] = [];
    let collector: OtlpReceiver | null = null;
    /** The DaemonSet podwire's records of this test's pods so far. */
    const recordsOf = async (kind: 'handshake' | 'teardown') =>
      (await daemonSetLines()).filter(
        (l): l is HandshakeRecord & Record<string, unknown> =>
          l.kind === kind && pods.some((p) => p.sandboxId === l.sandboxId),
      );

    beforeAll(async () => {
      await noLabUp();
      const up = await podwire('lab', 'up');
      if (up.code !== 0) throw new Error(`lab up failed: ${up.stderr}`);
      // The collector on the node, where the pod reaches it: the lab bridge's address (its pods' gateway), which
      // the bridge gets with the first pod; until the receiver listens, podwire's exporter retries.
      const [subnet] = (await labStatus()).subnets;
      const gateway = subnet?.replace(/\.0\/\d+$/, '.1') ?? '';
      const port = await freePort();
      // Builds the image (cold, minutes; the image test may have made it) and imports it into the lab.
      const daemonSet = await podwire(
        'lab',
        'daemonset',
        'up',
        '--build',
        '--env',
        `OTEL_EXPORTER_OTLP_ENDPOINT=http://${gateway}:${port}`,
      );
      if (daemonSet.code !== 0) throw new Error(`lab daemonset up failed: ${daemonSet.stderr}`);
      collector = await startOtlpReceiver('http/protobuf', { host: gateway, port });
      await until(
        'the DaemonSet podwire to be ready',
        async () =>
          (await daemonSetLines()).some((l) => l.kind === 'status' && l.state === 'ready'),
        120_000,
      );
    }, 15 * 60_000);

    afterAll(async () => {
      await collector?.close();
      const down = await podwire('lab', 'down');
      if (down.code !== 0) throw new Error(`lab down failed: ${down.stderr}`);
    }, 180_000);

    it('finds the node’s containerd and plugins through /proc/<pid>/root and probes them', async () => {
      const lines = await daemonSetLines();
      const found = lines.find((l) => l.state === 'runtime-found');
      expect(found?.binary).toMatch(/^\/proc\/\d+\/root\/usr\/bin\/containerd$/);
      const plugins = lines.find((l) => l.state === 'plugin-probes');
      expect(plugins?.mode).toBe('uprobes');
      expect(plugins?.plugins).toEqual(
        expect.arrayContaining([expect.stringMatching(/\/root\/usr\/lib\/cni\/bridge$/)]),
      );
    });

    it('traces the pods created after it exactly, handshakes and teardowns', async () => {
      pods = await createPods(3, 3);
      await until(
        '3 handshakes from the DaemonSet',
        async () => (await recordsOf('handshake')).length === 3,
        60_000,
      );
      for (const record of await recordsOf('handshake')) {
        const pod = pods.find((p) => p.sandboxId === record.sandboxId) ?? null;
        expect(inexact(record, pod, labHandshakeSteps), record.sandboxId ?? undefined).toEqual([]);
      }
      await deletePods(pods);
      await until(
        '3 teardowns from the DaemonSet',
        async () => (await recordsOf('teardown')).length === 3,
        60_000,
      );
      for (const record of await recordsOf('teardown'))
        expect(inexact(record, null, labTeardownSteps), record.sandboxId ?? undefined).toEqual([]);
      // Its traces reach the collector on the node: each pod's handshake root span, named for the node.
      await until(
        'the traces of the 3 pods at the collector',
        () =>
          pods.every((pod) =>
            collector?.spans.some((span) => span.attributes['k8s.pod.name'] === pod.name),
          ),
        30_000,
      );
      const span = collector?.spans.find((s) => s.attributes['k8s.pod.name'] === pods[0]?.name);
      expect(span?.resource['k8s.node.name']).toBeTruthy();
    });

    it('stops within its grace period and leaves nothing in tracefs', async () => {
      const [pid] = podwireInPod();
      expect(pid, 'the podwire in the pod, seen from the node').toBeGreaterThan(0);
      const down = await podwire('lab', 'daemonset', 'down');
      expect(down.code, down.stderr).toBe(0);
      // Stopped by itself, not by the runtime's SIGKILL at the end of the grace period.
      const seconds = Number(/stopped container podwire in ([\d.]+) s/.exec(down.stderr)?.[1]);
      expect(seconds).toBeLessThan(30);
      expect(running(pid as number)).toBe(false);
      const group = `podwire_${pid}_`;
      expect(readFileSync(`${tracefs}/uprobe_events`, 'utf8')).not.toContain(group);
      expect(readdirSync(`${tracefs}/instances`).filter((i) => i.startsWith(group))).toEqual([]);
    });
  },
);
