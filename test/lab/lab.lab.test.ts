// The lab node for real: containerd + CNI reference plugins + namespaces + veths, checked with `ip` as a user would.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CreatedPod } from '../../src/lab/pods.js';
import {
  bridge,
  hostLinks,
  type IpLink,
  ip,
  ipv4InSubnet,
  isRoot,
  labProcesses,
  labState,
  labStatus,
  labUpWithTinyRange,
  machineSnapshot,
  noLabUp,
  podwire,
  rootReason,
} from './node.js';

interface CreateJson {
  pods: CreatedPod[];
  created: number;
  failed: number;
  runPodSandboxMs: { p50: number | null; p95: number | null };
}

const subnet = '10.244.77.0/24';

async function expectLabGone(before: Awaited<ReturnType<typeof machineSnapshot>>): Promise<void> {
  const after = await machineSnapshot();
  expect(after.labProcesses, 'no containerd or shim of the lab runs').toEqual([]);
  expect(after.links, 'no veth or bridge of the lab is left').toEqual(before.links);
  expect(after.netnsPins, 'no netns pin of the lab is left').toEqual(before.netnsPins);
  expect(after.labMounts, 'no mount of the lab is left').toEqual(before.labMounts);
  expect(after.labDirs, 'the lab removed its dirs').toEqual([]);
  expect(after.runtimeDirs, 'the runtime dirs the lab caused are gone').toEqual(before.runtimeDirs);
}

describe.skipIf(!isRoot)(
  `lab node on real containerd + CNI${isRoot ? '' : ` (skipped: ${rootReason})`}`,
  () => {
    let before: Awaited<ReturnType<typeof machineSnapshot>>;
    const scratch = mkdtempSync(join(tmpdir(), 'podwire-lab-test-'));

    beforeAll(async () => {
      await noLabUp();
      before = await machineSnapshot();
    });

    afterAll(async () => {
      // Whatever failed above, the machine is left as it was found.
      await podwire('lab', 'down');
      rmSync(scratch, { recursive: true, force: true });
    });

    it('refuses a broken --cni-config with one clear line before anything starts', async () => {
      const missingPlugin = join(scratch, 'missing.conflist');
      writeFileSync(
        missingPlugin,
        JSON.stringify({ cniVersion: '1.0.0', name: 'x', plugins: [{ type: 'no-such-plugin' }] }),
      );
      const notJson = join(scratch, 'broken.conflist');
      writeFileSync(notJson, '{"cniVersion": "1.0.0", "name": ');

      const refusedPlugin = await podwire('lab', 'up', '--cni-config', missingPlugin);
      expect(refusedPlugin.code).not.toBe(0);
      expect(refusedPlugin.stderr).toMatch(/plugin "no-such-plugin" is not in \/usr\/lib\/cni/);
      const refusedJson = await podwire('lab', 'up', '--cni-config', notJson);
      expect(refusedJson.code).not.toBe(0);
      expect(refusedJson.stderr).toMatch(/is not valid JSON/);
      expect(refusedJson.stderr.trim().split('\n')).toHaveLength(1);

      expect(existsSync(labState), 'nothing was started').toBe(false);
      expect(labProcesses()).toEqual([]);
    });

    it('comes up, answers CRI, and a second lab up changes nothing', async () => {
      const up = await podwire('lab', 'up');
      expect(up.code, up.stderr).toBe(0);
      const first = await labStatus();
      expect(first.running).toBe(true);
      expect(first.criEndpoint).toBe(`unix://${labState}/containerd.sock`);
      expect(first.containerdVersion).toMatch(/^\d+\.\d+/);
      expect(first.subnets).toEqual([subnet]);

      const again = await podwire('lab', 'up');
      expect(again.code).toBe(0);
      expect(again.stderr).toMatch(/already up/);
      expect((await labStatus()).pid).toBe(first.pid);
    });

    it('creates 8 pods 4 at a time, each wired into its own netns with eth0 and a veth on the lab bridge', async () => {
      const result = await podwire(
        'lab',
        'pods',
        'create',
        '--count',
        '8',
        '--parallel',
        '4',
        '--json',
      );
      expect(result.code, result.stderr).toBe(0);
      const created = JSON.parse(result.stdout) as CreateJson;
      expect(created.failed).toBe(0);
      expect(created.pods).toHaveLength(8);

      const ips = created.pods.map((pod) => pod.ip);
      expect(new Set(ips).size, 'distinct IPs').toBe(8);
      const hostSide = await hostLinks();
      for (const pod of created.pods) {
        expect(pod.sandboxId).toMatch(/^[0-9a-f]{64}$/);
        expect(ipv4InSubnet(pod.ip ?? '', subnet), `${pod.ip} inside ${subnet}`).toBe(true);
        expect(pod.netns).toMatch(/^\/var\/run\/netns\/cni-/);
        expect(existsSync(pod.netns ?? '')).toBe(true);

        const netnsName = (pod.netns ?? '').split('/').pop() ?? '';
        const inPod = (await ip('-n', netnsName, '-d', 'addr', 'show', 'eth0')) as IpLink[];
        const eth0 = inPod[0];
        expect(eth0?.linkinfo?.info_kind).toBe('veth');
        expect(eth0?.addr_info?.map((a) => a.local)).toContain(pod.ip);
        // eth0's peer index names the host end: it must be a veth enslaved to the lab bridge.
        const peer = hostSide.find((link) => link.ifindex === eth0?.link_index);
        expect(peer?.linkinfo?.info_kind, `host end of ${pod.name}`).toBe('veth');
        expect(peer?.master).toBe(bridge);
      }

      const status = await labStatus();
      expect(status.pods.map((pod) => pod.id).sort()).toEqual(
        created.pods.map((pod) => pod.sandboxId).sort(),
      );
      for (const pod of status.pods) {
        const made = created.pods.find((c) => c.sandboxId === pod.id);
        expect(pod.ip).toBe(made?.ip);
        expect(pod.netns).toBe(made?.netns);
        expect(pod.name).toBe(made?.name);
        expect(pod.uid).toBe(made?.uid);
        expect(pod.state).toBe('SANDBOX_READY');
      }
    });

    it('deletes pods: their netns pins and veths go with them', async () => {
      const status = await labStatus();
      const pins = status.pods.map((pod) => pod.netns ?? '');
      const deleted = await podwire('lab', 'pods', 'delete', '--all');
      expect(deleted.code, deleted.stderr).toBe(0);
      expect((await labStatus()).pods).toEqual([]);
      for (const pin of pins) expect(existsSync(pin), pin).toBe(false);
      const enslaved = (await hostLinks()).filter((link) => link.master === bridge);
      expect(enslaved).toEqual([]);
    });

    it('lab down leaves no process, netns pin, veth, bridge, mount or dir of the lab', async () => {
      await podwire('lab', 'pods', 'create', '--count', '2', '--parallel', '2');
      const down = await podwire('lab', 'down');
      expect(down.code, down.stderr).toBe(0);
      await expectLabGone(before);
    });

    it('lab down after kill -9 of the lab containerd still cleans up', async () => {
      expect((await podwire('lab', 'up')).code).toBe(0);
      const created = await podwire(
        'lab',
        'pods',
        'create',
        '--count',
        '3',
        '--parallel',
        '3',
        '--with-container',
      );
      expect(created.code, created.stderr).toBe(0);
      const { pid } = await labStatus();
      expect(pid).toBeGreaterThan(0);
      process.kill(pid as number, 'SIGKILL');
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect((await labStatus()).running).toBe(false);
      expect(labProcesses().length, 'the shims outlive containerd').toBeGreaterThan(0);

      const down = await podwire('lab', 'down');
      expect(down.code, down.stderr).toBe(0);
      await expectLabGone(before);
    });

    it('a pod that gets no address fails with the runtime error and the others are created', async () => {
      expect((await labUpWithTinyRange(scratch)).code).toBe(0);

      const result = await podwire(
        'lab',
        'pods',
        'create',
        '--count',
        '3',
        '--parallel',
        '1',
        '--json',
      );
      expect(result.code, 'a failed pod makes the command fail').not.toBe(0);
      const created = JSON.parse(result.stdout) as CreateJson;
      expect(created.created).toBe(2);
      expect(created.failed).toBe(1);
      const failed = created.pods.find((pod) => pod.error);
      expect(failed?.error).toMatch(/no IP addresses available/);

      expect((await podwire('lab', 'down')).code).toBe(0);
      await expectLabGone(before);
    });
  },
);
