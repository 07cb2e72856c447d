// A real terminal for the timeline's tests (tmux): our own tmux server, its socket in a directory of ours, so that
// the tests never touch anyone's sessions and end only the server they started (tmux leaves its socket file
// behind, so the directory goes too).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const haveTmux = spawnSync('tmux', ['-V']).status === 0;
// UTF-8 inside and out, so that blessed draws lines and bars and tmux keeps them in its captures.
const env = { ...process.env, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class Tmux {
  private readonly dir = mkdtempSync(join(tmpdir(), 'podwire-tmux-'));
  private readonly socket = join(this.dir, 'tmux.sock');

  run(...args: string[]): string {
    return execFileSync('tmux', ['-u', '-S', this.socket, ...args], { encoding: 'utf8', env });
  }

  /** A session running `command` in `cwd`; it prints EXITED <code> when the command ends, and stays. */
  open(name: string, command: string, cwd: string, cols = 120, rows = 36): Terminal {
    const shell = `${command}; echo EXITED $?; sleep 600`;
    this.run(
      'new-session',
      '-d',
      '-s',
      name,
      '-x',
      String(cols),
      '-y',
      String(rows),
      '-c',
      cwd,
      shell,
    );
    return new Terminal(this, name);
  }

  /** Ends this server and its sessions, and removes its directory. */
  end(): void {
    spawnSync('tmux', ['-S', this.socket, 'kill-server']);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export class Terminal {
  constructor(
    private readonly tmux: Tmux,
    readonly name: string,
  ) {}

  screen(): string {
    return this.tmux.run('capture-pane', '-p', '-t', this.name);
  }

  keys(...keys: string[]): void {
    this.tmux.run('send-keys', '-t', this.name, ...keys);
  }

  /** Types `text` as it is (no key names). */
  type(text: string): void {
    this.tmux.run('send-keys', '-t', this.name, '-l', text);
  }

  resize(cols: number, rows: number): void {
    this.tmux.run('resize-window', '-t', this.name, '-x', String(cols), '-y', String(rows));
  }

  /** Fails with the screen in the message when `check` does not hold for it. */
  expect(screen: string, what: string, check: (screen: string) => boolean): void {
    if (!check(screen)) throw new Error(`${what}: not so; the screen was:\n${screen}`);
  }

  /** The pid of the podwire the session runs: the child of its shell whose command line names the CLI. */
  podwirePid(): number | null {
    const shell = this.tmux.run('display-message', '-p', '-t', this.name, '#{pane_pid}').trim();
    const children = readFileSync(`/proc/${shell}/task/${shell}/children`, 'utf8')
      .trim()
      .split(/\s+/);
    for (const child of children) {
      try {
        if (readFileSync(`/proc/${child}/cmdline`, 'utf8').includes('cli.js')) return Number(child);
      } catch {
        // Gone meanwhile.
      }
    }
    return null;
  }

  /**
   * Waits until the screen passes `check` and has stopped changing (two captures 100 ms apart alike: tmux shows
   * a redraw as it arrives, so a title can be new while the pane below it is not yet); on timeout, fails with what
   * the screen showed.
   */
  async until(
    what: string,
    check: (screen: string) => boolean,
    timeoutMs = 15_000,
  ): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let previous: string | null = null;
    let screen = this.screen();
    while (!(check(screen) && screen === previous)) {
      if (Date.now() > deadline)
        throw new Error(`${what}: not on screen after ${timeoutMs} ms; the screen was:\n${screen}`);
      await sleep(100);
      previous = screen;
      screen = this.screen();
    }
    return screen;
  }
}
