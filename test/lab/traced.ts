// The harness of the lab's end-to-end tests: podwire trace as a child, the lab under it, what it printed.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { expect } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import { labPaths } from '../../src/lab/paths.js';
import {
  type CreatedPod,
  createPods as createLabPods,
  deletePods as deleteLabPods,
} from '../../src/lab/pods.js';
import { bridgeHandshakeSteps } from '../correlate/recordings.js';
import { until } from '../until.js';
import { podwire } from './node.js';

/** What `podwire lab pods create --json` prints. */
export interface Created {
  pods: CreatedPod[];
}

export type Line = HandshakeRecord | { kind: 'status'; state: string; message: string };

export class Trace {
  readonly lines: Line[] = [];
  private child: ChildProcess;
  exitCode: Promise<number | null>;

  constructor(record: string, extra: string[] = [], env: Record<string, string> = {}) {
    // In a process group of its own, as a shell starts a job: stop({ likeCtrlC: true }) signals that group.
    this.child = spawn('node', ['dist/src/cli.js', 'trace', '--record', record, ...extra], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...env },
      detached: true,
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

  /**
   * SIGINT to the pid we started (likeCtrlC: to its whole process group, as a terminal's Ctrl-C): flush and exit 0;
   * SIGKILL if it has not ended 30 s later.
   */
  async stop({ likeCtrlC = false } = {}): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exitCode;
    if (likeCtrlC) process.kill(-(this.child.pid as number), 'SIGINT');
    else this.child.kill('SIGINT');
    const late = setTimeout(() => this.child.kill('SIGKILL'), 30_000);
    try {
      return await this.exitCode;
    } finally {
      clearTimeout(late);
    }
  }
}

/** The live (not zombie) children of `pid`, with their command names. */
export function childrenOf(pid: number): { pid: number; comm: string }[] {
  const children: { pid: number; comm: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === pid && state !== 'Z')
        children.push({
          pid: Number(entry),
          comm: readFileSync(`/proc/${entry}/comm`, 'utf8').trim(),
        });
    } catch {
      // Gone meanwhile.
    }
  }
  return children;
}

/**
 * `lab up` with these arguments (and `labEnv` in the lab containerd's environment, which it hands on to the CNI
 * plugins), then `podwire trace --record` (with `traceEnv`) until it says it is ready.
 */
export async function tracedLab(
  upArgs: string[],
  recording: string,
  traceArgs: string[] = [],
  {
    labEnv = {},
    traceEnv = {},
  }: { labEnv?: Record<string, string>; traceEnv?: Record<string, string> } = {},
): Promise<Trace> {
  const saved = { ...process.env };
  Object.assign(process.env, labEnv);
  const up = await podwire('lab', 'up', ...upArgs);
  for (const key of Object.keys(labEnv)) {
    if (saved[key] === undefined) delete process.env[key];
    else process.env[key] = saved[key];
  }
  if (up.code !== 0) throw new Error(`lab up ${upArgs.join(' ')} failed: ${up.stderr}`);
  const trace = new Trace(recording, traceArgs, traceEnv);
  try {
    await trace.waitFor('the ready status', () =>
      trace.lines.some((l) => l.kind === 'status' && l.state === 'ready'),
    );
  } catch (error) {
    // Not left running behind a failed start: the next test's tracer would share the node with it.
    await trace.stop();
    throw error;
  }
  return trace;
}

/** Stops the tracer and the lab; the recording and what the tracer said stay in .cache/ for a look after a failure. */
export async function endTracedLab(
  trace: Trace | undefined,
  recording: string,
  name: string,
): Promise<void> {
  await trace?.stop();
  // Its janitor removes its uprobe events after it exits (seconds for a few hundred): the next test file, and the
  // machine after the last, start clean.
  let leftBehind: unknown = null;
  if (trace) {
    const group = `podwire_${trace.pid}_`;
    await until(
      `the janitor of podwire ${trace.pid} to remove its uprobe events`,
      () => !readFileSync('/sys/kernel/tracing/uprobe_events', 'utf8').includes(group),
      30_000,
    ).catch((error: unknown) => {
      leftBehind = error;
    });
  }
  const down = await podwire('lab', 'down');
  mkdirSync('.cache', { recursive: true });
  if (existsSync(recording)) copyFileSync(recording, `.cache/${name}-recording.ndjson`);
  writeFileSync(
    `.cache/${name}-output.ndjson`,
    (trace?.lines ?? []).map((line) => JSON.stringify(line)).join('\n'),
  );
  // A lab left up would fail the next test file's start, blaming it.
  if (down.code !== 0) throw new Error(`podwire lab down failed: ${down.stderr.trim()}`);
  if (leftBehind) throw leftBehind;
}

/** One more pod on the lab, and the handshake the tracer gives for it. */
export async function oneMorePod(trace: Trace, after: string): Promise<HandshakeRecord> {
  const before = trace.records('handshake').length;
  const result = await podwire('lab', 'pods', 'create', '--count', '1', '--json');
  expect(result.code, result.stderr).toBe(0);
  await trace.waitFor(`a handshake ${after}`, () => trace.records('handshake').length > before);
  return trace.records('handshake').at(-1) as HandshakeRecord;
}

/** The steps every handshake on the lab has (its bridge network), under `cri RunPodSandbox`. */
export const labHandshakeSteps = ['cri RunPodSandbox', ...bridgeHandshakeSteps];

/** The steps every teardown on the lab has. */
export const labTeardownSteps = [
  'cri StopPodSandbox',
  'cni DEL bridge',
  'netns delete',
  'cri RemovePodSandbox',
];

/**
 * How a record differs from what CRI said of its pod, one line each; empty when it is exact: ok, nothing missing,
 * every phase closed, every required step there, the pod's ids, IP and netns as CRI gave them.
 */
export function inexact(
  record: HandshakeRecord,
  pod: Created['pods'][number] | null,
  steps: string[],
): string[] {
  const wrong: string[] = [];
  if (record.outcome !== 'ok')
    wrong.push(
      `outcome ${record.outcome}: ${JSON.stringify(record.error ?? record.missing ?? null)}`,
    );
  const open = record.phases.filter((p) => p.end === null).map((p) => p.name);
  if (open.length > 0) wrong.push(`open phases: ${open.join(', ')}`);
  const names = new Set(record.phases.map((p) => p.name));
  const absent = steps.filter((step) => !names.has(step));
  if (absent.length > 0) wrong.push(`missing steps: ${absent.join(', ')}`);
  if (pod && record.kind === 'handshake') {
    if (record.sandboxId !== pod.sandboxId) wrong.push(`sandboxId ${record.sandboxId}`);
    if (
      JSON.stringify(record.pod) !==
      JSON.stringify({ namespace: pod.namespace, name: pod.name, uid: pod.uid })
    )
      wrong.push(`pod ${JSON.stringify(record.pod)}`);
    if (record.podIP?.split('/')[0] !== pod.ip)
      wrong.push(`podIP ${record.podIP} (CRI: ${pod.ip})`);
    if (record.netns !== pod.netns) wrong.push(`netns ${record.netns} (CRI: ${pod.netns})`);
  }
  return wrong;
}

/**
 * `count` pods, `parallel` at a time, created as `podwire lab pods create` does (its code, in this process: a
 * churn of hundreds of pods does not start a CLI for each round).
 */
export async function createPods(count: number, parallel: number): Promise<CreatedPod[]> {
  const pods = await createLabPods(
    labPaths(),
    { count, parallel, namespace: 'default', prefix: 'lab', withContainer: false },
    () => undefined,
  );
  const failed = pods.filter((pod) => pod.error);
  if (failed.length > 0) throw new Error(`RunPodSandbox failed: ${failed[0]?.error}`);
  return pods;
}

/** StopPodSandbox, then RemovePodSandbox, of these pods, all at once, as `podwire lab pods delete` does each. */
export async function deletePods(pods: CreatedPod[]): Promise<void> {
  const ids = pods.map((pod) => pod.sandboxId).filter((id): id is string => id !== null);
  const deleted = (
    await Promise.all(ids.map((id) => deleteLabPods(labPaths(), [id], () => undefined)))
  ).flat();
  const failed = deleted.filter((pod) => pod.error);
  if (failed.length > 0) throw new Error(`deleting ${failed[0]?.sandboxId}: ${failed[0]?.error}`);
}
