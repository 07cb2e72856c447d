// `podwire attach` on the node against the podwire of the lab's DaemonSet pod, through the socket it serves on the
// host path /run/podwire: two viewers in real terminals see the pods as they are created, one killed -9 costs the
// daemon nothing (its records stay whole and exact), and the view says when the daemon stops.
import { spawn } from 'node:child_process';
import { existsSync, lstatSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import type { CreatedPod } from '../../src/lab/pods.js';
import { daemonSetLines, podwireInPod } from '../lab/daemonset.js';
import { isRoot, noLabUp, podwire, rootReason } from '../lab/node.js';
import { inexact, labHandshakeSteps, labTeardownSteps } from '../lab/traced.js';
import { haveTmux, type Terminal, Tmux } from '../tui/terminal.js';
import { until } from '../until.js';

const runDir = '/run/podwire';

async function createPods(count: number): Promise<CreatedPod[]> {
  const made = await podwire('lab', 'pods', 'create', '--count', String(count), '--json');
  if (made.code !== 0) throw new Error(`lab pods create failed: ${made.stderr}`);
  return (JSON.parse(made.stdout) as { pods: CreatedPod[] }).pods;
}

/** The records the list holds, from its title (the header's own count ends a line a long export state cuts). */
const listed = (screen: string) =>
  Number(/pods (\d+)(?: of \d+)?, newest first/.exec(screen)?.[1] ?? -1);

const canRun = isRoot && haveTmux;
const why = !isRoot ? rootReason : 'needs tmux';

describe.skipIf(!canRun)(
  `podwire attach to the lab's DaemonSet podwire${canRun ? '' : ` (skipped: ${why})`}`,
  () => {
    const runDirBefore = existsSync(runDir);
    let tmux: Tmux;
    let daemonPid = 0;
    const pods: CreatedPod[] = [];
    const viewers: Terminal[] = [];

    beforeAll(async () => {
      await noLabUp();
      tmux = new Tmux();
      const up = await podwire('lab', 'up');
      if (up.code !== 0) throw new Error(`lab up failed: ${up.stderr}`);
      // Built from this checkout: the podwire in the pod is this one.
      const daemonSet = await podwire('lab', 'daemonset', 'up', '--build');
      if (daemonSet.code !== 0) throw new Error(`lab daemonset up failed: ${daemonSet.stderr}`);
      await until(
        'the DaemonSet podwire to be ready',
        async () =>
          (await daemonSetLines()).some((l) => l.kind === 'status' && l.state === 'ready'),
        120_000,
      );
      daemonPid = podwireInPod()[0] ?? 0;
    }, 15 * 60_000);

    afterAll(async () => {
      tmux?.end();
      const down = await podwire('lab', 'down');
      if (down.code !== 0) throw new Error(`lab down failed: ${down.stderr}`);
      // The lab made /run/podwire for the pod's hostPath (DirectoryOrCreate) and lab down removes it.
      expect(existsSync(runDir)).toBe(runDirBefore);
    }, 180_000);

    it('serves its socket in the host’s /run/podwire, only root’s', () => {
      expect(daemonPid).toBeGreaterThan(0);
      expect(lstatSync(runDir).mode & 0o777).toBe(0o700);
      const socket = lstatSync(`${runDir}/attach-${daemonPid}.sock`);
      expect(socket.isSocket()).toBe(true);
      expect(socket.mode & 0o777).toBe(0o600);
      expect(socket.uid).toBe(0);
    });

    it('two viewers see the pods as they come; one killed -9 leaves the other and the daemon whole', async () => {
      for (const name of ['one', 'two']) {
        const term = tmux.open(name, `'${process.execPath}' dist/src/cli.js attach`, process.cwd());
        await term.until('attached', (s) => s.includes(`attached to pid ${daemonPid}`), 30_000);
        viewers.push(term);
      }
      const [one, two] = viewers as [Terminal, Terminal];
      pods.push(...(await createPods(3)));
      for (const term of [one, two]) {
        const screen = await term.until(
          'the three pods',
          (s) => pods.every((pod) => s.includes(`default/${pod.name}`)),
          60_000,
        );
        expect(screen).toMatch(/runtime containerd/);
        expect(listed(screen)).toBe(3);
      }
      // The first viewer dies as a kill -9 of `kubectl exec` would leave it.
      const pid = one.podwirePid();
      expect(pid).toBeGreaterThan(0);
      process.kill(pid as number, 'SIGKILL');
      await one.until('the first viewer gone', (s) => s.includes('EXITED 137'));
      pods.push(...(await createPods(3)));
      const screen = await two.until('six pods', (s) => listed(s) === 6, 60_000);
      for (const pod of pods.slice(3, 6)) expect(screen).toContain(`default/${pod.name}`);

      // A script's viewer, without a terminal: the hello and the six handshakes in its backlog.
      const json = spawn(process.execPath, ['dist/src/cli.js', 'attach', '--json'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let text = '';
      json.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        text += chunk;
      });
      try {
        await until('the backlog on --json', () => {
          const lines = text.split('\n').filter((l) => l.startsWith('{'));
          return lines.filter((l) => l.includes('"kind":"handshake"')).length === 6;
        });
      } finally {
        json.kill('SIGKILL');
      }
      const hello = JSON.parse(text.split('\n')[0] as string) as Record<string, unknown>;
      expect(hello).toMatchObject({ kind: 'attach', pid: daemonPid, version: '0.1.0' });

      // The daemon's own records: every pod's handshake, exact, and nothing said of the viewers that went.
      await until(
        '6 handshakes in the daemon’s log',
        async () =>
          (await daemonSetLines()).filter(
            (l) => l.kind === 'handshake' && pods.some((p) => p.sandboxId === l.sandboxId),
          ).length === 6,
        60_000,
      );
      const lines = await daemonSetLines();
      for (const pod of pods) {
        const [record, ...more] = lines.filter(
          (l) => l.kind === 'handshake' && l.sandboxId === pod.sandboxId,
        ) as unknown as HandshakeRecord[];
        expect(more).toEqual([]);
        expect(inexact(record as HandshakeRecord, pod, labHandshakeSteps), pod.name).toEqual([]);
      }
      expect(lines.filter((l) => l.state === 'viewer-dropped')).toEqual([]);
      expect(lines.filter((l) => l.state === 'events-lost')).toEqual([]);

      const ids = pods.map((pod) => pod.sandboxId as string);
      const deleted = await podwire('lab', 'pods', 'delete', ...ids);
      expect(deleted.code, deleted.stderr).toBe(0);
      await two.until('six teardowns', (s) => listed(s) === 12, 60_000);
      const teardowns = (await daemonSetLines()).filter(
        (l) => l.kind === 'teardown' && ids.includes(l.sandboxId as string),
      ) as unknown as HandshakeRecord[];
      expect(teardowns).toHaveLength(6);
      for (const record of teardowns)
        expect(inexact(record, null, labTeardownSteps), record.sandboxId ?? '').toEqual([]);
    }, 300_000);

    it('when the daemon stops the view says so and stays until q; its socket is gone', async () => {
      const [, two] = viewers as [Terminal, Terminal];
      const down = await podwire('lab', 'daemonset', 'down');
      expect(down.code, down.stderr).toBe(0);
      const screen = await two.until('the daemon gone', (s) =>
        s.includes(`pid ${daemonPid} stopped; q quits`),
      );
      expect(listed(screen)).toBe(12);
      expect(existsSync(`${runDir}/attach-${daemonPid}.sock`)).toBe(false);
      two.keys('q');
      await two.until('podwire attach to end', (s) => s.includes('EXITED 0'));
    }, 120_000);
  },
);
