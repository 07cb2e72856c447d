// podwire finds a containerd that runs under another root (as the node's runtime does for a podwire in a DaemonSet
// pod) and reaches its files through /proc/<pid>/root. Real processes: a static program named containerd, run
// chrooted into a directory of its own. (The other way round, podwire under another root, is the lab's DaemonSet
// test.)
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rootOf, runningRuntimes } from '../../src/binaries/discover.js';
import { isRoot, rootReason, running } from '../lab/node.js';
import { until } from '../until.js';

describe('runningRuntimes', () => {
  it('names a containerd that shares podwire’s root by its own path', () => {
    expect(rootOf(process.pid)).toBe('');
    for (const found of runningRuntimes()) {
      if (found.root === '') expect(found.binary).toMatch(/\/containerd$/);
    }
  });

  describe.skipIf(!isRoot)(`under another root${isRoot ? '' : ` (skipped: ${rootReason})`}`, () => {
    const scratch = mkdtempSync(join(tmpdir(), 'podwire-discover-'));
    let pid = 0;
    afterAll(() => {
      if (pid && running(pid)) process.kill(pid, 'SIGKILL');
      rmSync(scratch, { recursive: true, force: true });
    });

    it('finds it and reaches its binary through /proc/<pid>/root', async () => {
      // A static program that waits: a chroot holds no libc.
      writeFileSync(
        join(scratch, 'wait.c'),
        '#include <unistd.h>\nint main(void) { pause(); return 0; }\n',
      );
      const root = join(scratch, 'root');
      mkdirSync(join(root, 'usr/bin'), { recursive: true });
      execFileSync('cc', ['-static', '-O2', '-o', join(scratch, 'wait'), join(scratch, 'wait.c')]);
      copyFileSync(join(scratch, 'wait'), join(root, 'usr/bin/containerd'));
      const child = spawn('chroot', [root, '/usr/bin/containerd'], { stdio: 'ignore' });
      pid = child.pid as number;
      await until(
        'the chrooted containerd to exec',
        () => {
          try {
            return readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('/usr/bin/containerd');
          } catch {
            return false;
          }
        },
        5_000,
      );
      expect(rootOf(pid)).toBe(`/proc/${pid}/root`);
      const found = runningRuntimes().find((r) => r.pids.includes(pid));
      // Its other files (CNI plugins, config) are reached through its root; its binary, which the kernel names
      // from podwire's root here, by that name.
      expect(found).toEqual({
        runtime: 'containerd',
        binary: join(root, 'usr/bin/containerd'),
        root: `/proc/${pid}/root`,
        pids: [pid],
      });
      expect(readFileSync(`${found?.root}/usr/bin/containerd`)).toEqual(
        readFileSync(join(root, 'usr/bin/containerd')),
      );
    });
  });
});
