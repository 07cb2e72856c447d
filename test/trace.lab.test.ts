// podwire trace on the real lab: every pod the kubelet-like client creates gets one record that agrees with CRI and `ip`.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandshakeRecord, PhaseRecord } from '../src/correlate/record.js';
import { bridgeHandshakeSteps } from './correlate/recordings.js';
import {
  bridge,
  hostLinks,
  type IpLink,
  ip,
  isRoot,
  labState,
  labUpWithTinyRange,
  podwire,
  rootReason,
} from './lab/node.js';

interface Created {
  pods: {
    name: string;
    namespace: string;
    uid: string;
    sandboxId: string | null;
    ip: string | null;
    netns: string | null;
    error: string | null;
  }[];
}

type Line = HandshakeRecord | { kind: 'status'; state: string; message: string };

class Trace {
  readonly lines: Line[] = [];
  private child: ChildProcess;
  exitCode: Promise<number | null>;

  constructor(record: string, extra: string[] = []) {
    this.child = spawn('node', ['dist/src/cli.js', 'trace', '--record', record, ...extra], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let buffer = '';
    this.child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      for (const part of parts) if (part.trim()) this.lines.push(JSON.parse(part) as Line);
    });
    this.exitCode = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  records(kind: 'handshake' | 'teardown'): HandshakeRecord[] {
    return this.lines.filter((line): line is HandshakeRecord => line.kind === kind);
  }

  async waitFor(what: string, done: () => boolean, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline)
        throw new Error(
          `timed out waiting for ${what}; trace said: ${JSON.stringify(this.lines.filter((l) => l.kind === 'status'))}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** SIGINT to the pid we started: flush and exit 0. */
  stop(): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill('SIGINT');
    return this.exitCode;
  }
}

/** `lab up` with these arguments, then `podwire trace --record` until it says it is ready. */
async function tracedLab(
  upArgs: string[],
  recording: string,
  traceArgs: string[] = [],
): Promise<Trace> {
  const up = await podwire('lab', 'up', ...upArgs);
  if (up.code !== 0) throw new Error(`lab up ${upArgs.join(' ')} failed: ${up.stderr}`);
  const trace = new Trace(recording, traceArgs);
  await trace.waitFor('the ready status', () =>
    trace.lines.some((l) => l.kind === 'status' && l.state === 'ready'),
  );
  return trace;
}

/** Stops the tracer and the lab; the recording and what the tracer said stay in .cache/ for a look after a failure. */
async function endTracedLab(
  trace: Trace | undefined,
  recording: string,
  name: string,
): Promise<void> {
  await trace?.stop();
  await podwire('lab', 'down');
  mkdirSync('.cache', { recursive: true });
  if (existsSync(recording)) copyFileSync(recording, `.cache/${name}-recording.ndjson`);
  writeFileSync(
    `.cache/${name}-output.ndjson`,
    (trace?.lines ?? []).map((line) => JSON.stringify(line)).join('\n'),
  );
}

/** One more pod on the lab, and the handshake the tracer gives for it. */
async function oneMorePod(trace: Trace, after: string): Promise<HandshakeRecord> {
  const before = trace.records('handshake').length;
  const result = await podwire('lab', 'pods', 'create', '--count', '1', '--json');
  expect(result.code, result.stderr).toBe(0);
  await trace.waitFor(`a handshake ${after}`, () => trace.records('handshake').length > before);
  return trace.records('handshake').at(-1) as HandshakeRecord;
}

const phase = (record: HandshakeRecord, name: string) => record.phases.find((p) => p.name === name);
const required = ['cri RunPodSandbox', ...bridgeHandshakeSteps];

describe.skipIf(!isRoot)(
  `podwire trace on the lab${isRoot ? '' : ` (skipped: ${rootReason})`}`,
  () => {
    const scratch = mkdtempSync(join(tmpdir(), 'podwire-trace-test-'));
    const recording = join(scratch, 'run.ndjson');
    const plugins = join(scratch, 'plugins');
    let trace: Trace;
    let created: Created;

    beforeAll(async () => {
      if (existsSync(labState))
        throw new Error(
          `a lab is already up or was left behind (${labState}): run podwire lab down first`,
        );
      // A CNI bin dir of the test's own besides Debian's: a plugin is installed there while tracing.
      mkdirSync(plugins, { recursive: true });
      trace = await tracedLab([], recording, [
        '--cni-bin-dir',
        '/usr/lib/cni',
        '--cni-bin-dir',
        plugins,
      ]);
    });

    afterAll(async () => {
      await endTracedLab(trace, recording, 'trace-lab');
      rmSync(scratch, { recursive: true, force: true });
    });

    it('says it is ready only after every probe is attached, and names the runtime it found', () => {
      const statuses = trace.lines.filter((l) => l.kind === 'status');
      expect(
        statuses.some((s) => s.state === 'runtime-found' && /containerd/.test(s.message)),
      ).toBe(true);
      expect(
        trace.lines.findIndex((l) => l.kind === 'status' && l.state === 'ready'),
      ).toBeGreaterThanOrEqual(0);
      expect(trace.records('handshake')).toEqual([]);
    });

    it("probes the plugins' netlink and stdout in their own code, not at the system-wide syscalls", () => {
      const where = trace.lines.find((l) => l.kind === 'status' && l.state === 'plugin-probes') as
        | { message: string; mode: string; plugins: string[] }
        | undefined;
      expect(where?.mode, where?.message).toBe('uprobes');
      expect(where?.plugins).toEqual(
        expect.arrayContaining(['/usr/lib/cni/bridge', '/usr/lib/cni/loopback']),
      );
    });

    it('gives exactly one handshake per pod for 10 pods created 5 at a time, agreeing with CRI and ip', async () => {
      const result = await podwire(
        'lab',
        'pods',
        'create',
        '--count',
        '10',
        '--parallel',
        '5',
        '--json',
      );
      expect(result.code, result.stderr).toBe(0);
      created = JSON.parse(result.stdout) as Created;
      await trace.waitFor('10 handshakes', () => trace.records('handshake').length >= 10);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const records = trace.records('handshake');
      expect(records).toHaveLength(10);
      const links = await hostLinks();
      for (const pod of created.pods) {
        const record = records.find((r) => r.sandboxId === pod.sandboxId) as HandshakeRecord;
        expect(record, `a record for ${pod.name}`).toBeDefined();
        expect(record.outcome, JSON.stringify(record.error)).toBe('ok');
        expect(record.pod).toEqual({ namespace: pod.namespace, name: pod.name, uid: pod.uid });
        expect(record.podIP?.split('/')[0], 'the IP PodSandboxStatus reports').toBe(pod.ip);
        expect(record.netns).toBe(pod.netns);
        // The host veth podwire names is enslaved to the lab bridge, and its peer is eth0 in this pod's netns.
        const host = links.find((link) => link.ifname === record.hostVeth) as IpLink;
        expect(host?.master, `${record.hostVeth} on ${bridge}`).toBe(bridge);
        const [eth0] = (await ip(
          '-n',
          (pod.netns ?? '').split('/').pop() ?? '',
          '-d',
          'link',
          'show',
          'eth0',
        )) as IpLink[];
        expect(eth0?.link_index, 'eth0 peer is the host veth').toBe(host.ifindex);
        expect(record.podInterface).toBe('eth0');
        const root = phase(record, 'cri RunPodSandbox') as PhaseRecord;
        for (const name of required) {
          const seen = phase(record, name);
          expect(seen, `${pod.name}: ${name}`).toBeDefined();
          expect(
            (seen as PhaseRecord).start >= root.start &&
              ((seen as PhaseRecord).end ?? '') <= (root.end ?? ''),
            `${name} inside RunPodSandbox`,
          ).toBe(true);
        }
      }
    });

    it('gives one teardown per deleted pod', async () => {
      const deleted = await podwire('lab', 'pods', 'delete', '--all');
      expect(deleted.code, deleted.stderr).toBe(0);
      await trace.waitFor('10 teardowns', () => trace.records('teardown').length >= 10);
      const teardowns = trace.records('teardown');
      expect(teardowns).toHaveLength(10);
      expect(teardowns.map((t) => t.sandboxId).sort()).toEqual(
        created.pods.map((p) => p.sandboxId).sort(),
      );
      for (const record of teardowns) {
        expect(record.outcome).toBe('ok');
        expect(record.phases.map((p) => p.name)).toEqual(
          expect.arrayContaining([
            'cri StopPodSandbox',
            'cni DEL bridge',
            'netns delete',
            'cri RemovePodSandbox',
          ]),
        );
      }
    });

    it('restarts a bpftrace that dies, says so, and goes on tracing', async () => {
      // The bpftrace this test's tracer started: a child of that pid, ended by its own pid.
      const children = readdirSync('/proc')
        .filter((entry) => /^\d+$/.test(entry))
        .filter((entry) => {
          try {
            const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
            const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
            return (
              ppid === trace.pid &&
              readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'bpftrace'
            );
          } catch {
            return false;
          }
        });
      expect(children).toHaveLength(1);
      process.kill(Number(children[0]), 'SIGKILL');
      const statuses = () =>
        trace.lines.filter((l) => l.kind === 'status') as { state: string; message: string }[];
      await trace.waitFor('a probe-failed status', () =>
        statuses().some((s) => s.state === 'probe-failed'),
      );
      await trace.waitFor('a probe-restarted status', () =>
        statuses().some((s) => s.state === 'probe-restarted'),
      );
      expect((await oneMorePod(trace, 'after the restart')).outcome).toBe('ok');
      expect((await podwire('lab', 'pods', 'delete', '--all')).code).toBe(0);
    });

    it('sees a plugin installed while it runs: attaches again, at the syscalls for a plugin that is not Go, and goes on tracing', async () => {
      const statuses = () =>
        trace.lines.filter((l) => l.kind === 'status') as {
          state: string;
          message: string;
          mode?: string;
        }[];
      const seen = statuses().length;
      writeFileSync(join(plugins, 'shell-plugin'), '#!/bin/sh\necho "{}"\n', { mode: 0o755 });
      await trace.waitFor(
        'a plugins-changed status and the kernel probes attached again',
        () => {
          const later = statuses().slice(seen);
          const changed = later.findIndex((s) => s.state === 'plugins-changed');
          return changed >= 0 && later.slice(changed).some((s) => s.state === 'probe-restarted');
        },
        40_000,
      );
      const later = statuses().slice(seen);
      const where = later.find((s) => s.state === 'plugin-probes');
      expect(where?.mode).toBe('syscalls');
      expect(where?.message).toMatch(/shell-plugin: not an ELF executable/);
      const record = await oneMorePod(trace, 'after the reload');
      expect(record.outcome).toBe('ok');
      for (const name of required) expect(phase(record, name), name).toBeDefined();
      expect((await podwire('lab', 'pods', 'delete', '--all')).code).toBe(0);
    });

    it('reports the pod that gets no address as failed, naming the plugin and its message, the others ok', async () => {
      expect((await podwire('lab', 'down')).code).toBe(0);
      expect((await labUpWithTinyRange(scratch)).code).toBe(0);
      const before = trace.records('handshake').length;
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
      const pods = (JSON.parse(result.stdout) as Created).pods;
      await trace.waitFor(
        '3 more handshakes',
        () => trace.records('handshake').length >= before + 3,
      );
      const records = trace.records('handshake').slice(before);
      // The lab's containerd was stopped and started again: its CRI probes stayed in the binary, so even
      // the first pods after the start have their RunPodSandbox call.
      for (const record of records) expect(phase(record, 'cri RunPodSandbox')).toBeDefined();
      expect(records.filter((r) => r.outcome === 'ok')).toHaveLength(2);
      const failed = records.find((r) => r.outcome === 'failed') as HandshakeRecord;
      expect(failed.pod.name).toBe(pods.find((p) => p.error)?.name);
      expect(failed.error?.phase).toBe('ipam host-local');
      expect(failed.error?.message).toMatch(/no IP addresses available/);
    });

    it('stops cleanly on SIGINT, and a replay of its recording gives the same records', async () => {
      const jaeger = join(scratch, 'replay.jaeger.json');
      expect(await trace.stop()).toBe(0);
      expect(readFileSync('/sys/kernel/tracing/uprobe_events', 'utf8')).not.toMatch(/podwire_/);
      const replayed = await new Promise<string>((resolve, reject) => {
        const child = spawn(
          'node',
          ['dist/src/cli.js', 'replay', recording, '--json', '--jaeger-json', jaeger],
          {
            stdio: ['ignore', 'pipe', 'inherit'],
          },
        );
        let out = '';
        child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
        child.once('exit', (code) =>
          code === 0 ? resolve(out) : reject(new Error(`replay exited ${code}`)),
        );
      });
      const records = (text: string) =>
        text.split('\n').filter((l) => l.trim() && !l.includes('"kind":"status"'));
      const live = trace.lines.filter((l) => l.kind !== 'status').map((l) => JSON.stringify(l));
      expect(records(replayed)).toEqual(live);
      // The same run as a file Jaeger's UI opens: one trace per record, named by its pod.
      const traces = (
        JSON.parse(readFileSync(jaeger, 'utf8')) as {
          data: { spans: { tags: { key: string; value: unknown }[] }[] }[];
        }
      ).data;
      expect(traces).toHaveLength(live.length);
      const podNames = traces.map(
        (t) => t.spans[0]?.tags.find((tag) => tag.key === 'k8s.pod.name')?.value,
      );
      expect(podNames).toEqual(
        trace.lines.filter((l) => l.kind !== 'status').map((l) => (l as HandshakeRecord).pod.name),
      );
    });
  },
);

const sidContainerd = '.cache/containerd-sid/usr/bin/containerd';
const haveSid = existsSync(sidContainerd);
const sidReason = `needs ${sidContainerd}: scripts/fetch-containerd-sid.sh puts containerd 2.x from Debian sid there`;

describe.skipIf(!isRoot || !haveSid)(
  `podwire trace on a lab running containerd 2.x${isRoot && haveSid ? '' : ` (skipped: ${isRoot ? sidReason : rootReason})`}`,
  () => {
    let trace: Trace;
    const scratch = mkdtempSync(join(tmpdir(), 'podwire-trace2-test-'));

    beforeAll(async () => {
      if (existsSync(labState))
        throw new Error(
          `a lab is already up or was left behind (${labState}): run podwire lab down first`,
        );
      // The fallback for plugins podwire cannot probe in their own code, on the real stack too.
      trace = await tracedLab(
        ['--containerd', `${process.cwd()}/${sidContainerd}`],
        join(scratch, 'run.ndjson'),
        ['--plugin-probes', 'syscalls'],
      );
    });

    afterAll(async () => {
      await endTracedLab(trace, join(scratch, 'run.ndjson'), 'trace-lab2');
      rmSync(scratch, { recursive: true, force: true });
    });

    it('finds the 2.x runtime, reads its CRI calls and gives full handshakes and teardowns (plugins probed at the syscalls)', async () => {
      const where = trace.lines.find((l) => l.kind === 'status' && l.state === 'plugin-probes');
      expect((where as { mode?: string } | undefined)?.mode).toBe('syscalls');
      const found = trace.lines.find((l) => l.kind === 'status' && l.state === 'runtime-found');
      expect((found as { message: string }).message).toMatch(/containerd 2\.\d+/);
      const result = await podwire(
        'lab',
        'pods',
        'create',
        '--count',
        '3',
        '--parallel',
        '3',
        '--json',
      );
      expect(result.code, result.stderr).toBe(0);
      const pods = (JSON.parse(result.stdout) as Created).pods;
      await trace.waitFor('3 handshakes', () => trace.records('handshake').length >= 3);
      for (const pod of pods) {
        const record = trace
          .records('handshake')
          .find((r) => r.sandboxId === pod.sandboxId) as HandshakeRecord;
        expect(record?.outcome).toBe('ok');
        expect(record.pod).toEqual({ namespace: pod.namespace, name: pod.name, uid: pod.uid });
        expect(record.podIP?.split('/')[0]).toBe(pod.ip);
        for (const name of required)
          expect(phase(record, name), `${pod.name}: ${name}`).toBeDefined();
      }
      expect((await podwire('lab', 'pods', 'delete', '--all')).code).toBe(0);
      await trace.waitFor('3 teardowns', () => trace.records('teardown').length >= 3);
      for (const record of trace.records('teardown')) {
        expect(record.phases.map((p) => p.name)).toEqual(
          expect.arrayContaining(['cri StopPodSandbox', 'cni DEL bridge', 'cri RemovePodSandbox']),
        );
      }
    });
  },
);
