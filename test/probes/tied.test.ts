// A child started through tiedToDaemon ends when the daemon is killed with -9; a missing command is left to spawn.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { onPath, tiedToDaemon } from '../../src/probes/tied.js';
import { running } from '../lab/node.js';

const haveSetpriv = onPath('setpriv', '/usr/bin:/bin') !== null;

/**
 * A stand-in daemon (the built podwire's tied.js) that starts `sleep 600` through tiedToDaemon with the spawn
 * options `options` (code, where `run` is in scope), runs `more`, prints the child's pid, and waits.
 */
function standInDaemon(options: string, more: string, ownGroup: boolean) {
  return spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { spawn } from 'node:child_process';
       import { tiedToDaemon } from '${process.cwd()}/dist/src/probes/tied.js';
       const run = tiedToDaemon('sleep', ['600']);
       const child = spawn(run.file, run.args, ${options});
       ${more}
       console.log(child.pid);
       setInterval(() => {}, 1000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'], detached: ownGroup },
  );
}

describe('tiedToDaemon', () => {
  it('leaves a command that is not there as it is, so that spawn names it in its ENOENT', () => {
    expect(tiedToDaemon('podwire-no-such-command', ['-x'])).toEqual({
      file: 'podwire-no-such-command',
      args: ['-x'],
      detached: true,
    });
  });

  it.skipIf(!haveSetpriv)(
    `ends the child when its parent is killed with -9${haveSetpriv ? '' : ' (skipped: needs setpriv from util-linux)'}`,
    async () => {
      // A stand-in daemon (the built podwire's tied.js): starts `sleep` tied to it, prints the pid, and waits.
      const daemon = standInDaemon('{ stdio: "ignore" }', '', false);
      const pid = await new Promise<number>((resolve) =>
        daemon.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim()))),
      );
      try {
        // setpriv sets the death signal, then becomes sleep: on a busy machine that takes a moment.
        const comm = () => readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
        const started = Date.now() + 5000;
        while (running(pid) && comm() !== 'sleep' && Date.now() < started)
          await new Promise((r) => setTimeout(r, 20));
        expect(comm()).toBe('sleep');
        daemon.kill('SIGKILL');
        const deadline = Date.now() + 5000;
        while (running(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        expect(running(pid)).toBe(false);
      } finally {
        daemon.kill('SIGKILL');
        if (running(pid)) process.kill(pid, 'SIGKILL');
      }
    },
    15_000,
  );

  it.skipIf(!haveSetpriv)(
    `keeps the child out of a SIGINT to the daemon's process group, as a terminal's Ctrl-C sends${haveSetpriv ? '' : ' (skipped: needs setpriv from util-linux)'}`,
    async () => {
      // A stand-in daemon in a group of its own, as a shell starts a job: it starts `sleep` as podwire starts its
      // children, and notes a SIGINT instead of dying of it, as podwire does while it stops.
      const daemon = standInDaemon(
        '{ stdio: "ignore", detached: run.detached }',
        `child.once('exit', (code, signal) => console.log('child ended', signal));
         process.on('SIGINT', () => console.log('daemon got SIGINT'));`,
        true,
      );
      let out = '';
      daemon.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      const until = async (what: RegExp) => {
        const deadline = Date.now() + 5000;
        while (!what.test(out) && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 20));
      };
      await until(/^\d+\n/);
      const pid = Number(out.trim().split('\n')[0]);
      try {
        process.kill(-(daemon.pid as number), 'SIGINT');
        await until(/daemon got SIGINT/);
        await new Promise((r) => setTimeout(r, 300));
        expect(out).toMatch(/daemon got SIGINT/);
        expect(out).not.toMatch(/child ended/);
        expect(running(pid)).toBe(true);
      } finally {
        daemon.kill('SIGKILL');
        const deadline = Date.now() + 5000;
        while (running(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        if (running(pid)) process.kill(pid, 'SIGKILL');
      }
    },
    15_000,
  );
});
