// podwire while the node's runtime fails under it, on the real lab: containerd killed with -9 and started again, and
// its binary replaced on disk by another version (1.6 from Debian, then 2.x from sid) and restarted, as an upgrade
// does. The statuses say what happened, and the pods after it are traced exactly.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../src/correlate/record.js';
import { isRoot, noLabUp, podwire, rootReason } from './lab/node.js';
import {
  createPods,
  deletePods,
  inexact,
  labHandshakeSteps,
  labTeardownSteps,
  Trace,
} from './lab/traced.js';

const sidDir = '.cache/containerd-sid/usr/bin';

type Status = { kind: 'status'; state: string; message: string; version?: string };

/** Creates and deletes `count` pods; every handshake and teardown must be exact against CRI. */
async function expectTracedExactly(trace: Trace, count: number): Promise<void> {
  const pods = await createPods(count, count);
  const ids = pods.map((pod) => pod.sandboxId as string);
  await deletePods(pods);
  await trace.waitFor(`${count} teardowns`, () =>
    ids.every((id) => trace.records('teardown').some((r) => r.sandboxId === id)),
  );
  for (const pod of pods) {
    const handshake = trace.records('handshake').find((r) => r.sandboxId === pod.sandboxId);
    const teardown = trace.records('teardown').find((r) => r.sandboxId === pod.sandboxId);
    expect(handshake, `${pod.name}: its handshake`).toBeDefined();
    expect(inexact(handshake as HandshakeRecord, pod, labHandshakeSteps), pod.name).toEqual([]);
    expect(inexact(teardown as HandshakeRecord, pod, labTeardownSteps), pod.name).toEqual([]);
  }
}

describe.skipIf(!isRoot)(
  `podwire when containerd is killed, restarted and upgraded under it${isRoot ? '' : ` (skipped: ${rootReason})`}`,
  () => {
    let scratch = '';
    let binary = '';
    let trace: Trace;
    const statuses = () => trace.lines.filter((l): l is Status => l.kind === 'status');
    const said = (state: string, pattern: RegExp) =>
      statuses().some((s) => s.state === state && pattern.test(s.message));

    beforeAll(async () => {
      await noLabUp();
      scratch = mkdtempSync(join(tmpdir(), 'podwire-runtime-faults-'));
      // A binary of the test's own, which it may replace: uprobes belong to a file, and /usr/bin/containerd is the
      // machine's. Its shim beside it (the lab puts the binary's dir first on PATH).
      const bin = join(scratch, 'bin');
      mkdirSync(bin);
      binary = join(bin, 'containerd');
      copyFileSync('/usr/bin/containerd', binary);
      copyFileSync('/usr/bin/containerd-shim-runc-v2', join(bin, 'containerd-shim-runc-v2'));
      const up = await podwire('lab', 'up', '--containerd', binary);
      if (up.code !== 0) throw new Error(`lab up failed: ${up.stderr}`);
      trace = new Trace(join(scratch, 'run.ndjson'));
      await trace.waitFor(
        'the ready status',
        () => statuses().some((s) => s.state === 'ready'),
        60_000,
      );
    });

    afterAll(async () => {
      await trace?.stop();
      await podwire('lab', 'down');
      if (scratch) rmSync(scratch, { recursive: true, force: true });
    });

    it('containerd killed with -9 and started again: the statuses say so, and pods after are traced exactly', async () => {
      await expectTracedExactly(trace, 3);
      const status = JSON.parse((await podwire('lab', 'status', '--json')).stdout) as {
        pid: number | null;
      };
      const pid = status.pid;
      expect(pid, 'the lab containerd pid').toBeGreaterThan(0);
      // The lab's own containerd, started by the lab: ended by its pid.
      process.kill(pid as number, 'SIGKILL');
      await trace.waitFor('runtime-gone', () => said('runtime-gone', /no containerd runs/), 30_000);
      expect((await podwire('lab', 'restart')).code).toBe(0);
      await trace.waitFor('runtime-found again', () => said('runtime-found', /runs again/), 30_000);
      await expectTracedExactly(trace, 5);
    });

    it('its binary replaced on disk by containerd 2.x from sid and restarted: probed anew and traced exactly', async () => {
      const sid = join(sidDir, 'containerd');
      if (!existsSync(sid))
        throw new Error(
          `${sid} is missing: scripts/fetch-containerd.sh fetches containerd 2.x from Debian sid (npm test runs it); it could not`,
        );
      // As a package upgrade does: the new file renamed over the old one (a new inode), then a restart.
      for (const name of ['containerd', 'containerd-shim-runc-v2']) {
        const target = join(scratch, 'bin', name);
        copyFileSync(join(sidDir, name), `${target}.new`);
        renameSync(`${target}.new`, target);
      }
      expect((await podwire('lab', 'restart')).code).toBe(0);
      await trace.waitFor(
        'the old file let go',
        () => said('runtime-gone', /replaced on disk/),
        30_000,
      );
      await trace.waitFor(
        'the 2.x binary probed',
        () =>
          statuses().some(
            (s) => s.state === 'runtime-found' && /containerd 2\.\d+/.test(s.message),
          ),
        30_000,
      );
      // Its CRI probes are in place once its source says it is attached: the pods come after that.
      const found = statuses().findIndex(
        (s) => s.state === 'runtime-found' && /containerd 2\.\d+/.test(s.message),
      );
      await trace.waitFor('its CRI probes attached', () =>
        statuses()
          .slice(found)
          .some((s) => s.state === 'probe-restarted' && /^cri:.*probes attached$/.test(s.message)),
      );
      await expectTracedExactly(trace, 5);
    });
  },
);
