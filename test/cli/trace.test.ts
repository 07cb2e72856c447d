// `podwire trace --record` where the recording cannot be written: refused at start, or the recording alone ends.
// A path that cannot be written is refused in one line before anything is attached, and a disk that fills while
// tracing (/dev/full: every write is ENOSPC) ends the recording, not the tracing.
// Runs the built CLI (npm run build first), as root with bpftrace.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { isRoot, rootReason } from '../lab/node.js';

const cli = 'dist/src/cli.js';

describe.skipIf(!isRoot)(
  `podwire trace --record${isRoot ? '' : ` (skipped: ${rootReason})`}`,
  () => {
    it('refuses a recording in a directory that does not exist, in one line, before attaching anything', () => {
      const result = spawnSync(
        'node',
        [cli, 'trace', '--record', '/nonexistent-podwire/run.ndjson'],
        {
          encoding: 'utf8',
          timeout: 30_000,
        },
      );
      expect(result.status).toBe(2);
      expect(result.stdout).toBe('');
      expect(result.stderr.trim().split('\n')).toEqual([
        'podwire trace: cannot write the recording /nonexistent-podwire/run.ndjson: ENOENT: give --record a file in a writable directory',
      ]);
    });

    it('goes on tracing when the recording cannot be written any more (a full disk), and says so once', async () => {
      const child: ChildProcess = spawn('node', [cli, 'trace', '--record', '/dev/full'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const statuses: { state: string; message: string }[] = [];
      let exited = false;
      const exit = new Promise<number | null>((resolve) =>
        child.once('exit', (code) => {
          exited = true;
          resolve(code);
        }),
      );
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
        const parsed = JSON.parse(line) as { kind: string; state: string; message: string };
        if (parsed.kind === 'status') statuses.push(parsed);
      });
      try {
        const deadline = Date.now() + 60_000;
        while (!statuses.some((s) => s.state === 'ready') && !exited && Date.now() < deadline)
          await new Promise((resolve) => setTimeout(resolve, 100));
        expect(statuses.map((s) => s.state)).toContain('ready');
        const stopped = statuses.filter((s) => /the recording \/dev\/full stopped/.test(s.message));
        expect(stopped).toHaveLength(1);
        expect(stopped[0]?.message).toMatch(/ENOSPC.*tracing goes on without it/);
        expect(exited).toBe(false);
      } finally {
        if (!exited) child.kill('SIGINT');
      }
      expect(await exit).toBe(0);
    }, 90_000);
  },
);
