// bpftrace-poll.so: bpftrace reads its buffers on a timer instead of being woken for each event, and loses nothing
// by it. Real bpftrace through the real runner, as root; events are getpgid calls of a perl loop (a pid that cannot
// exist marks them).
import { execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { idlePollMs } from '../../src/probes/fifo-lines.js';
import { beginProbe, readyLine } from '../../src/probes/program.js';
import { defaultPollMs, type RunnerOptions } from '../../src/probes/runner.js';
import { onPath } from '../../src/probes/tied.js';
import { isRoot } from '../lab/node.js';
import { compilePollLibrary } from './poll-library.js';
import { startedProgram, until } from './running.js';

const library = isRoot && onPath('bpftrace') ? compilePollLibrary() : null;
const why = !isRoot
  ? 'needs root: it runs bpftrace'
  : !onPath('bpftrace')
    ? 'needs bpftrace: npm run setup installs it'
    : library && 'why' in library
      ? library.why
      : '';
const libraryPath = library && 'path' in library ? library.path : '';

const marker = 4_194_304 + 23;
const program = `tracepoint:syscalls:sys_enter_getpgid / args->pid == ${marker} / { printf("ev\\t%llu\\n", nsecs); }\n${beginProbe}\n`;

/** `count` marked events from perl, `gapMs` apart. */
function events(count: number, gapMs: number): void {
  execFileSync('perl', [
    '-e',
    `for (1..${count}) { getpgrp(${marker}); select(undef, undef, undef, ${gapMs / 1000}) if ${gapMs}; }`,
  ]);
}

/** Times bpftrace's main thread went to sleep (it sleeps in epoll_wait until woken or its timeout). */
function sleepsOf(pid: number): number {
  return Number(
    /voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1],
  );
}

describe.skipIf(why !== '')(`bpftrace-poll.so${why ? ` (skipped: ${why})` : ''}`, () => {
  const stops: (() => Promise<void>)[] = [];
  const scratch = mkdtempSync(join(tmpdir(), 'podwire-poll-test-'));
  afterAll(async () => {
    for (const stop of stops) await stop();
    if (library && 'remove' in library) library.remove();
    rmSync(scratch, { recursive: true, force: true });
  });

  const started = (options: RunnerOptions) =>
    startedProgram('poll-test', program, stops, options, 30_000);
  const marked = (lines: string[]) => lines.filter((raw) => raw.includes('ev\\t')).length;

  it('with it, bpftrace reads a thousand events a millisecond apart in a few dozen wake-ups instead of one each, every one of them', {
    timeout: 90_000,
  }, async () => {
    const polled = await started({ pollLibrary: libraryPath });
    const alone = await started({ pollLibrary: null });
    expect(polled.runner.wakeups).toBe(`reads its buffers every ${defaultPollMs} ms`);
    expect(alone.runner.wakeups).toMatch(/^is woken for each event/);
    const before = [sleepsOf(polled.runner.pid as number), sleepsOf(alone.runner.pid as number)];
    events(1000, 1);
    await until(
      'every event from both',
      () => marked(polled.lines) >= 1000 && marked(alone.lines) >= 1000,
    );
    const woke = [
      sleepsOf(polled.runner.pid as number) - (before[0] as number),
      sleepsOf(alone.runner.pid as number) - (before[1] as number),
    ] as [number, number];
    expect([marked(polled.lines), marked(alone.lines)]).toEqual([1000, 1000]);
    expect(polled.lines.filter((raw) => /Lost|died/.test(raw))).toEqual([]);
    // About one wake-up per poll interval of the ~1.2 s the loop ran (and the wait for the last ones), against one
    // per event or so for bpftrace alone.
    expect(woke[0]).toBeLessThan(6 * (1200 / defaultPollMs));
    expect(woke[1]).toBeGreaterThan(2 * woke[0]);
  });

  it("an event on a quiet node arrives within bpftrace's poll interval and the daemon's idle read interval", {
    timeout: 60_000,
  }, async () => {
    const { lines } = await started({ pollLibrary: libraryPath });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const sent = Date.now();
    events(1, 0);
    await until('the event', () => marked(lines) === 1, 5_000);
    // 600 ms of room for a busy machine's scheduling: a reader woken only at bpftrace's exit would take seconds.
    expect(Date.now() - sent).toBeLessThan(defaultPollMs + idlePollMs + 600);
  });

  it('stops on a SIGINT that comes while it prints a stream of events, every time (bpftrace 0.17 alone looks for it only in epoll_wait)', {
    timeout: 240_000,
  }, async () => {
    // bpftrace as podwire starts it but printing into a file, so that it never waits on its reader: the closer to
    // always busy, the likelier a SIGINT comes while it prints.
    const out = join(scratch, 'stream.out');
    const missed: number[] = [];
    for (let trial = 0; trial < 30; trial++) {
      const fd = openSync(out, 'w');
      const bpftrace = spawn('bpftrace', ['-f', 'json', '-e', program], {
        stdio: ['ignore', fd, 'ignore'],
        env: { ...process.env, LD_PRELOAD: libraryPath },
      });
      closeSync(fd);
      const exited = new Promise((resolve) => bpftrace.once('exit', resolve));
      await until(
        'bpftrace to attach',
        () => readFileSync(out, 'utf8').includes(readyLine),
        30_000,
      );
      const stream = spawn('perl', ['-e', `getpgrp(${marker}) for 1..40000;`], { stdio: 'ignore' });
      const streamed = new Promise((resolve) => stream.once('exit', resolve));
      await new Promise((resolve) => setTimeout(resolve, 100 + ((trial * 37) % 800)));
      bpftrace.kill('SIGINT');
      const gone = await Promise.race([
        exited.then(() => true),
        new Promise((resolve) => setTimeout(() => resolve(false), 3_000)),
      ]);
      if (!gone) {
        missed.push(trial);
        bpftrace.kill('SIGKILL');
        await exited;
      }
      await streamed;
    }
    // The library notes the signal itself, so one that comes while bpftrace prints is not missed.
    expect(missed).toEqual([]);
  });

  it('stopped right after a burst, bpftrace prints every event before it exits, and exits at once', {
    timeout: 60_000,
  }, async () => {
    const { runner, lines } = await started({ pollLibrary: libraryPath, pollMs: 1000 });
    // 1,500 lines fit one CPU's 256 KiB buffer: none can be lost, and with a 1 s poll most are still in it.
    events(1500, 0);
    const stopping = Date.now();
    await runner.stop();
    expect(Date.now() - stopping).toBeLessThan(8_000);
    expect(marked(lines)).toBe(1500);
  });
  it('stopped with thirty probes to let go of, which its threads close at once, bpftrace runs END and exits 0 by itself', {
    timeout: 60_000,
  }, async () => {
    const tracepoints = readdirSync('/sys/kernel/tracing/events/syscalls')
      .filter((name) => name.startsWith('sys_enter_'))
      .slice(0, 30);
    const file = join(scratch, 'thirty.bt');
    writeFileSync(
      file,
      `${tracepoints.map((name) => `tracepoint:syscalls:${name}`).join(',\n')}\n/ pid == ${marker} / { @n = count(); }\n${beginProbe}\nEND { clear(@n); printf("ended\\n"); }\n`,
    );
    const child = spawn('bpftrace', ['-f', 'json', file], {
      env: { ...process.env, LD_PRELOAD: libraryPath },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    const exited = new Promise<[number | null, string | null]>((resolve) =>
      child.once('exit', (code, signal) => resolve([code, signal])),
    );
    await until('bpftrace to attach', () => out.includes(readyLine), 30_000);
    const threads = () => readdirSync(`/proc/${child.pid}/task`).length;
    const before = threads();
    child.kill('SIGINT');
    // Its closer threads start with its first close of a probe; it waits for them before it exits.
    let most = before;
    while (child.exitCode === null && child.signalCode === null) {
      try {
        most = Math.max(most, threads());
      } catch {
        break; // gone between the two checks
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(await exited).toEqual([0, null]);
    expect(out).toContain('ended');
    expect(most).toBeGreaterThan(before);
  });
});
