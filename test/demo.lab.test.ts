// `podwire demo` as a newcomer runs it, in a real terminal (tmux): live pods and a failed one within a minute or
// two, `q` stops it, and the lab is gone afterwards.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isRoot, labState, machineSnapshot, noLabUp, podwire, rootReason } from './lab/node.js';

const haveTmux = (() => {
  try {
    execFileSync('tmux', ['-V']);
    return true;
  } catch {
    return false;
  }
})();

// A socket of the test's own (tmux leaves its file behind), made on first use, removed with its directory.
let socketDir: string | null = null;
const socket = () => {
  socketDir ??= mkdtempSync(join(tmpdir(), 'podwire-demo-tmux-'));
  return join(socketDir, 'tmux');
};
const session = 'demo';
const tmux = (...args: string[]) =>
  execFileSync('tmux', ['-S', socket(), ...args], { encoding: 'utf8' });
const screen = () => tmux('capture-pane', '-p', '-t', session);

/** Waits for the screen to show what `seen` looks for; on timeout, fails with the screen as it was. */
async function waitForScreen(what: string, seen: (text: string) => boolean, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let text = '';
  while (Date.now() < deadline) {
    text = screen();
    if (seen(text)) return text;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`timed out waiting for ${what}; the screen:\n${text}`);
}

const reason = !isRoot ? rootReason : 'needs tmux (apt-get install tmux)';

describe.skipIf(!isRoot || !haveTmux)(
  `podwire demo in a terminal${isRoot && haveTmux ? '' : ` (skipped: ${reason})`}`,
  () => {
    afterAll(async () => {
      // A test that failed half-way leaves the demo running: ask it to stop as a user would, then make sure.
      try {
        if (!/EXITED \d+/.test(screen())) {
          tmux('send-keys', '-t', session, 'q');
          await waitForScreen('the demo to stop', (text) => /EXITED \d+/.test(text), 90_000);
        }
      } catch {
        // No session, or it did not stop: the lab is taken down below.
      }
      try {
        tmux('kill-server');
      } catch {
        // Already gone with its last session.
      }
      if (socketDir) rmSync(socketDir, { recursive: true, force: true });
      if (existsSync(labState)) await podwire('lab', 'down');
    }, 120_000);

    it('shows live handshakes and a failed one, and q stops it and brings the lab down', async () => {
      await noLabUp();
      const before = await machineSnapshot();
      tmux(
        'new-session',
        '-d',
        '-s',
        session,
        '-x',
        '120',
        '-y',
        '35',
        `node dist/src/cli.js demo; echo "EXITED $?"; sleep 600`,
      );
      await waitForScreen(
        'live handshakes of demo pods',
        (text) => (text.match(/demo\/web-\S+.*\bok\b/g) ?? []).length >= 2,
        90_000,
      );
      // The demo asks for one pod more than the range holds about 20 s after it starts tracing.
      const failed = await waitForScreen(
        'a pod whose network setup failed',
        (text) => /demo\/\S+.*\bfailed\b/.test(text),
        120_000,
      );
      expect(failed).toMatch(/demo\/\S+/);
      tmux('send-keys', '-t', session, 'q');
      const done = await waitForScreen(
        'the demo to stop and bring the lab down',
        (text) => /EXITED \d+/.test(text),
        120_000,
      );
      expect(done, done).toMatch(/EXITED 0/);
      expect(existsSync(labState)).toBe(false);
      expect(await machineSnapshot()).toEqual(before);
    }, 400_000);
  },
);
