// What podwire's DaemonSet grants it, each taken away in turn on the lab: the pod template of deploy/kubernetes,
// edited as a user might get it wrong (a capability of the manifest's list dropped, hostPID off, tracefs not mounted),
// run through CRI as a kubelet runs it. podwire trace must refuse to start with one line naming what is missing and
// the manifest line that gives it back, and podwire doctor in the same pod must say so. This is how the capability
// list is measured and kept minimal: every capability it holds is shown to be needed.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { daemonSetPod } from '../../src/lab/daemonset.js';
import { labPaths } from '../../src/lab/paths.js';
import { labClient } from '../../src/lab/pods.js';
import { isRoot, noLabUp, podwire, rootReason } from '../lab/node.js';
import { until } from '../until.js';

const manifests = 'deploy/kubernetes';
const manifestText = readFileSync(join(manifests, 'daemonset.yaml'), 'utf8');
const containerPath = ['spec', 'template', 'spec', 'containers', 0];

/** `deploy/kubernetes/daemonset.yaml:N`, where line N of the manifest is `text` (trimmed). */
function manifestLineOf(text: string): string {
  const index = manifestText.split('\n').findIndex((line) => line.trim() === text);
  if (index < 0) throw new Error(`the manifest has no line "${text}"`);
  return `deploy/kubernetes/daemonset.yaml:${index + 1}`;
}

/** The capabilities the manifest adds: the list under test, read from it, never restated here. */
const grantedCapabilities = (
  parseDocument(manifestText).getIn([
    ...containerPath,
    'securityContext',
    'capabilities',
    'add',
  ]) as {
    toJSON(): string[];
  }
).toJSON();

type Edit = (manifest: ReturnType<typeof parseDocument>) => void;

/** A copy of deploy/kubernetes whose DaemonSet has this edit (and runs `command` if given), for --manifests. */
function editedManifests(scratch: string, name: string, edit: Edit, command?: string[]): string {
  const dir = join(scratch, name);
  cpSync(manifests, dir, { recursive: true });
  const file = join(dir, 'daemonset.yaml');
  const manifest = parseDocument(readFileSync(file, 'utf8'));
  edit(manifest);
  if (command) {
    manifest.setIn([...containerPath, 'command'], command);
    manifest.setIn([...containerPath, 'args'], []);
  }
  writeFileSync(file, manifest.toString());
  return dir;
}

interface Finished {
  exitCode: number;
  stdout: string[];
  stderr: string[];
}

/** Runs the DaemonSet from `dir` on the lab until its container exits; its exit code and what it wrote. */
async function runToExit(dir: string): Promise<Finished> {
  const up = await podwire('lab', 'daemonset', 'up', '--manifests', dir);
  if (up.code !== 0) throw new Error(`lab daemonset up --manifests ${dir} failed: ${up.stderr}`);
  const client = labClient(labPaths());
  try {
    const pod = await daemonSetPod(client);
    if (!pod) throw new Error('lab daemonset up left no pod');
    const [container] = await client.listContainers({ podSandboxId: pod.id });
    if (!container) throw new Error('the DaemonSet pod has no container');
    let exitCode: number | null = null;
    await until(
      'the DaemonSet container to exit',
      async () => {
        const { status } = await client.containerStatus(container.id);
        if (status.state === 'CONTAINER_EXITED') exitCode = status.exitCode;
        return exitCode !== null;
      },
      60_000,
    );
    const logs = await podwire('lab', 'daemonset', 'logs');
    const lines = (text: string) => text.split('\n').filter((line) => line !== '');
    return { exitCode: exitCode ?? -1, stdout: lines(logs.stdout), stderr: lines(logs.stderr) };
  } finally {
    client.close();
    await daemonSetDown();
  }
}

async function daemonSetDown(): Promise<void> {
  const down = await podwire('lab', 'daemonset', 'down');
  if (down.code !== 0) throw new Error(`lab daemonset down failed: ${down.stderr}`);
}

interface Withheld {
  what: string;
  edit: Edit;
  /** What the refusal and doctor's fix must name: the missing thing, and the manifest line. */
  names: string;
  line: string;
}

const withheld: Withheld[] = [
  ...grantedCapabilities.map(
    (capability): Withheld => ({
      what: `the capability ${capability}`,
      edit: (manifest) => {
        const add = manifest.getIn([
          ...containerPath,
          'securityContext',
          'capabilities',
          'add',
        ]) as { items: { value: unknown }[] };
        add.items = add.items.filter((item) => item.value !== capability);
      },
      names: `capability ${capability}`,
      line: manifestLineOf(`- ${capability}`),
    }),
  ),
  {
    what: "the node's processes (hostPID false)",
    edit: (manifest) => manifest.setIn(['spec', 'template', 'spec', 'hostPID'], false),
    names: 'hostPID: true',
    line: manifestLineOf('hostPID: true'),
  },
  {
    what: "the node's tracefs (its volumeMount removed)",
    edit: (manifest) => {
      const mounts = manifest.getIn([...containerPath, 'volumeMounts']) as {
        items: { get(key: string): unknown }[];
      };
      mounts.items = mounts.items.filter((item) => item.get('name') !== 'tracefs');
    },
    names: 'tracefs',
    line: manifestLineOf('- name: tracefs'),
  },
];

describe.skipIf(!isRoot)(
  `podwire in a pod refuses what it cannot do, naming the fix${isRoot ? '' : ` (skipped: ${rootReason})`}`,
  () => {
    let scratch = '';

    beforeAll(async () => {
      await noLabUp();
      scratch = mkdtempSync(join(tmpdir(), 'podwire-capabilities-'));
      const up = await podwire('lab', 'up');
      if (up.code !== 0) throw new Error(`lab up failed: ${up.stderr}`);
      // The image of this checkout (warm: seconds), with the manifest it names lines of.
      const build = await podwire('lab', 'daemonset', 'up', '--build');
      if (build.code !== 0) throw new Error(`lab daemonset up --build failed: ${build.stderr}`);
      await daemonSetDown();
    }, 900_000);

    afterAll(async () => {
      const down = await podwire('lab', 'down');
      if (scratch) rmSync(scratch, { recursive: true, force: true });
      if (down.code !== 0) throw new Error(`lab down failed: ${down.stderr}`);
    }, 120_000);

    it('grants exactly SYS_ADMIN and SYS_PTRACE, after dropping all others', () => {
      // The list this test measures; a change to it is a change to what podwire asks of a cluster, and the
      // README's "which privileges" must follow.
      expect([...grantedCapabilities].sort()).toEqual(['SYS_ADMIN', 'SYS_PTRACE']);
    });

    it('podwire doctor in the pod as the manifest has it: tracing can work', async () => {
      const run = await runToExit(
        editedManifests(scratch, 'doctor-as-is', () => {}, ['podwire', 'doctor']),
      );
      const report = run.stdout.join('\n');
      expect(report).toMatch(/^ok\s+capabilities\s+SYS_ADMIN, SYS_PTRACE effective/m);
      expect(report).toMatch(/^ok\s+host PID/m);
      expect(report).toMatch(/^ok\s+tracefs/m);
      expect(report).toMatch(/^ok\s+containerd\s+\/proc\/\d+\/root\/usr\/bin\/containerd/m);
      expect(report).toContain('tracing can work: yes');
      expect(run.exitCode).toBe(0);
    }, 120_000);

    for (const { what, edit, names, line } of withheld) {
      const slug = what.replace(/\W+/g, '-');
      it(`without ${what}, podwire trace refuses to start with one line naming it and ${line}`, async () => {
        const run = await runToExit(editedManifests(scratch, `trace-${slug}`, edit));
        expect(run.exitCode).toBe(2);
        // The last line says why; any before it are the start's own progress (where traces and metrics go).
        const refusal = run.stderr.at(-1);
        const before = run.stderr.slice(0, -1);
        expect(before.filter((each) => /cannot|need|error|fail|missing|not /i.test(each))).toEqual(
          [],
        );
        expect(refusal).toMatch(/^podwire trace: /);
        expect(refusal).toContain(names);
        expect(refusal).toContain(line);
        // Nothing misleading before it: no probe said to fail for another reason, no record.
        const said = run.stdout.map((each) => JSON.parse(each) as { kind: string; state?: string });
        expect(said.filter((each) => each.state === 'probe-failed')).toEqual([]);
        expect(said.filter((each) => each.kind !== 'status')).toEqual([]);
      }, 120_000);

      it(`without ${what}, podwire doctor in the pod says it is missing, with ${line}`, async () => {
        const run = await runToExit(
          editedManifests(scratch, `doctor-${slug}`, edit, ['podwire', 'doctor']),
        );
        expect(run.exitCode).toBe(1);
        const report = run.stdout.join('\n');
        const missing = run.stdout.filter((each) => each.startsWith('missing'));
        expect(missing.join('\n')).toContain(names.replace('capability ', ''));
        expect(report).toMatch(new RegExp(`fix: .*${line.replace(/[.]/g, '\\.')}`));
        expect(report).toContain('tracing can work: no');
      }, 120_000);
    }
  },
);
