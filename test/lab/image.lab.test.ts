// The pause image in a real containerd 1.6, as `lab up` uses it: imported under its own name, unpacked, run as PID 1.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import {
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildPauseImage, type OciArchive } from '../../src/lab/image.js';
import { isRoot, rootReason } from './node.js';

const run = promisify(execFile);
const reference = 'localhost/podwire/pause:lab';

/** A child that exits at once and leaves a grandchild behind: the grandchild becomes PID 1's to reap. */
const orphanMakerSource = `#include <sys/wait.h>
#include <unistd.h>
int main(void) {
  pid_t child = fork();
  if (child == 0) {
    if (fork() == 0) { sleep(1); _exit(0); }
    _exit(0);
  }
  waitpid(child, 0, 0);
  return 0;
}
`;

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  ms = 20_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Host processes whose parent is `pid`, with their state letter (Z for a zombie). */
function childrenOf(pid: number): { pid: number; state: string }[] {
  const children: { pid: number; state: string }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(ppid) === pid) children.push({ pid: Number(name), state: state ?? '?' });
  }
  return children;
}

/** Mount points under `dir`, deepest first, decoded from mountinfo's octal escapes. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .map((path) =>
      path.replace(/\\([0-7]{3})/g, (_, code: string) =>
        String.fromCharCode(Number.parseInt(code, 8)),
      ),
    )
    .filter((path) => path.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

describe.skipIf(!isRoot)(`pause image import${isRoot ? '' : ` (skipped: ${rootReason})`}`, () => {
  // Set in beforeAll, so that a skipped run leaves no temp dir behind.
  let dir = '';
  let socket = '';
  const containerIds: string[] = [];
  let daemon: ChildProcess | undefined;
  let archive: OciArchive;

  const ctr = (...args: string[]) =>
    run('ctr', ['--address', socket, '--namespace', 'k8s.io', ...args], { timeout: 60_000 });

  // ctr run's shim puts its socket under /run/containerd/s whatever the config says: remove what it made.
  const runtimeDirs = ['/run/containerd/s', '/run/containerd/fifo', '/run/containerd'];
  let runtimeDirsMade: string[] = [];

  beforeAll(async () => {
    runtimeDirsMade = runtimeDirs.filter((made) => !existsSync(made));
    dir = mkdtempSync(join(tmpdir(), 'pwimg-'));
    socket = join(dir, 'containerd.sock');
    writeFileSync(
      join(dir, 'config.toml'),
      `version = 2
root = ${JSON.stringify(join(dir, 'root'))}
state = ${JSON.stringify(join(dir, 'state'))}
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]
[grpc]
  address = ${JSON.stringify(socket)}
[ttrpc]
  address = ${JSON.stringify(`${socket}.ttrpc`)}
[metrics]
  address = ""
`,
    );
    const log = openSync(join(dir, 'containerd.log'), 'a');
    // A direct child, so that afterAll can stop exactly this process and wait for it.
    daemon = spawn('containerd', ['--config', join(dir, 'config.toml')], {
      stdio: ['ignore', log, log],
    });
    const started = daemon;
    await until('containerd to serve', async () => {
      if (started.exitCode !== null || started.signalCode !== null) {
        const tail = readFileSync(join(dir, 'containerd.log'), 'utf8').trimEnd().split('\n').at(-1);
        throw new Error(`containerd exited: ${tail}`);
      }
      await ctr('version');
      return true;
    }).catch((err: Error) => {
      throw new Error(`${err.message} (log: ${join(dir, 'containerd.log')})`);
    });

    archive = await buildPauseImage({ reference, workDir: dir });
    writeFileSync(join(dir, 'pause.oci.tar'), archive.tar);
  });

  afterAll(async () => {
    for (const id of containerIds) {
      await ctr('task', 'kill', '-s', 'SIGKILL', id).catch(() => undefined);
      await ctr('task', 'delete', '--force', id).catch(() => undefined);
      await ctr('containers', 'delete', id).catch(() => undefined);
    }
    const started = daemon;
    if (started && started.exitCode === null && started.signalCode === null) {
      const exited = new Promise((resolve) => started.once('exit', resolve));
      started.kill('SIGTERM');
      const timer = setTimeout(() => started.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    if (dir === '') return;
    for (const mountPoint of mountsUnder(dir)) {
      await run('umount', [mountPoint]).catch(() => run('umount', ['-l', mountPoint]));
    }
    rmSync(dir, { recursive: true, force: true });
    for (const made of runtimeDirsMade) {
      try {
        rmdirSync(made);
      } catch {
        // Not empty: something else uses it now.
      }
    }
  });

  it('is named by its own io.containerd.image.name annotation and unpacked', async () => {
    const { stdout } = await ctr('images', 'import', join(dir, 'pause.oci.tar'));
    expect(stdout).toContain(`unpacking ${reference} (${archive.manifestDigest})...done`);

    const images = await ctr('images', 'ls', '-q');
    expect(images.stdout.trim().split('\n')).toEqual([reference]);
    const check = await ctr('images', 'check');
    expect(check.stdout).toMatch(
      new RegExp(`^${reference} .* complete \\(2/2\\) .* true\\s*$`, 'm'),
    );
    // One uncompressed layer: the snapshot's chain ID is the layer's digest.
    const snapshots = await ctr('snapshots', 'ls');
    expect(snapshots.stdout).toContain(archive.layerDigest);
  });

  it('runs its entrypoint as PID 1, reaps orphans, and exits 0 on SIGTERM', async () => {
    const orphanMaker = join(dir, 'orphan-maker');
    await new Promise<void>((resolve, reject) => {
      const gcc = spawn('gcc', ['-static', '-O2', '-o', orphanMaker, '-x', 'c', '-'], {
        stdio: ['pipe', 'ignore', 'inherit'],
      });
      gcc.on('error', reject);
      gcc.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`gcc exited ${code}`))));
      gcc.stdin?.end(orphanMakerSource);
    });

    const id = 'podwire-pause-test';
    containerIds.push(id);
    const container = spawn(
      'ctr',
      [
        ...['--address', socket, '--namespace', 'k8s.io', 'run', '--rm', '--null-io'],
        ...['--runc-root', join(dir, 'runc'), '--fifo-dir', join(dir, 'fifo')],
        ...['--mount', `type=bind,src=${orphanMaker},dst=/orphan-maker,options=rbind:ro`],
        reference,
        id,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    container.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exitCode = new Promise<number | null>((resolve) => container.on('exit', resolve));

    const pausePid = await until('the task to run', async () => {
      const { stdout } = await ctr('task', 'ls');
      const row = stdout.split('\n').find((line) => line.startsWith(`${id} `));
      const [, pid, status] = row?.split(/\s+/) ?? [];
      return status === 'RUNNING' ? Number(pid) : undefined;
    });
    const ps = await ctr('task', 'ps', id);
    expect(ps.stdout).toContain(String(pausePid));

    const exec = ctr(
      'task',
      'exec',
      '--fifo-dir',
      join(dir, 'fifo'),
      '--exec-id',
      'orphans',
      id,
      '/orphan-maker',
    );
    exec.catch(() => undefined); // awaited below; failing earlier must not leave it unhandled
    const adopted = await until('an orphan to be reparented to pause', async () =>
      childrenOf(pausePid).length > 0 ? childrenOf(pausePid) : undefined,
    );
    expect(adopted.length).toBeGreaterThan(0);
    await exec;
    const left = await until(
      'pause to reap its orphans',
      async () => (childrenOf(pausePid).length === 0 ? [] : undefined),
      5_000,
    ).catch(() => childrenOf(pausePid));
    expect(left, 'children (Z = unreaped zombie) left under pause').toEqual([]);

    await ctr('task', 'kill', '--signal', 'SIGTERM', id);
    expect(await exitCode, stderr).toBe(0);
  });
});
