// Ticks: how podwire learns how far each probe program has been read (probes/tick.bt, the CRI reader's
// trace_marker). Real bpftrace and real tracefs, as root.
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, getPriority } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { inspectContainerd } from '../../src/binaries/runtime.js';
import { parseBpftraceLine } from '../../src/decode/lines.js';
import { beginProbe, probesDir } from '../../src/probes/program.js';
import type { ProbeRunner } from '../../src/probes/runner.js';
import { onPath } from '../../src/probes/tied.js';
import { tracefs, UprobeEventsRunner } from '../../src/probes/uprobe-events.js';
import { isRoot } from '../lab/node.js';
import { startedProgram, until } from './running.js';

const taskset = onPath('taskset');

const containerd = '/usr/bin/containerd';
const why = !isRoot
  ? 'needs root: it runs bpftrace and writes tracefs'
  : !existsSync(containerd)
    ? `needs ${containerd}: npm run setup installs it`
    : '';

/** The tick lines' timestamps among a program's lines. */
function tickTimes(lines: string[]): bigint[] {
  return lines.flatMap((raw) => {
    const parsed = parseBpftraceLine(raw);
    return parsed.type === 'probe' && parsed.line.tag === 'tick' ? [parsed.line.ns] : [];
  });
}

describe.skipIf(why !== '')(
  `ticks from real probe programs${why ? ` (skipped: ${why})` : ''}`,
  () => {
    const stops: (() => Promise<void>)[] = [];
    afterAll(async () => {
      for (const stop of stops) await stop();
    });

    /** tick.bt and `extra` probes in one real bpftrace, started and attached; its raw lines as they come. */
    function tickProgram(
      name: string,
      extra = '',
    ): Promise<{ lines: string[]; runner: ProbeRunner }> {
      const fragment = readFileSync(join(probesDir(), 'tick.bt'), 'utf8').replaceAll(
        '{{DAEMON_PID}}',
        String(process.pid),
      );
      return startedProgram(name, `${fragment}\n${extra}\n${beginProbe}\n`, stops);
    }

    it("tick.bt: the runner's tick (a getpriority for the daemon's own pid) is answered within a few batches, up to a time after the call", {
      timeout: 60_000,
    }, async () => {
      const { lines, runner } = await tickProgram('tick-test');
      expect(runner.tickMode).toBe('batches');
      // Someone else's priority (pid 1) asks for nothing.
      getPriority(1);
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(tickTimes(lines)).toEqual([]);
      const asked = process.hrtime.bigint();
      runner.tick();
      await until('a tick at or after the request', () =>
        tickTimes(lines).some((ns) => ns >= asked),
      );
      const answered = process.hrtime.bigint();
      // bpftrace wakes at least every 100 ms: the answer takes two of its batches at most, then it stops ticking.
      expect(Number(answered - asked) / 1e6).toBeLessThan(1000);
      const count = tickTimes(lines).length;
      expect(count).toBeLessThanOrEqual(2);
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(tickTimes(lines)).toHaveLength(count);
    });

    it.skipIf(availableParallelism() < 2 || !taskset)(
      `tick.bt: after bpftrace was stopped while two CPUs wrote, no event older than a tick comes after it${availableParallelism() < 2 || !taskset ? ' (skipped: needs 2 CPUs and taskset)' : ''}`,
      { timeout: 60_000 },
      async () => {
        // Events from processes pinned to one CPU each (getpgid of a pid that cannot exist marks them).
        const marker = 4_194_304 + 17;
        const { lines, runner } = await tickProgram(
          'tick-order-test',
          `tracepoint:syscalls:sys_enter_getpgid / args->pid == ${marker} / { printf("ev\\t%llu\\t%d\\n", nsecs, cpu); }`,
        );
        const onCpu = (cpu: number, script: string) =>
          execFileSync(taskset as string, ['-c', String(cpu), 'perl', '-e', script]);
        const events = (count: number) => `getpgrp(${marker}) for 1..${count};`;
        // As a starved bpftrace sees it: CPU 0 writes, then CPU 1, then CPU 0 again, 300 ms apart, and the daemon
        // asks for a tick from CPU 0 last. bpftrace reads CPU 0's buffer (ready first) to its end before CPU 1's.
        process.kill(runner.pid as number, 'SIGSTOP');
        try {
          onCpu(0, events(20));
          await new Promise((resolve) => setTimeout(resolve, 300));
          onCpu(1, events(20));
          await new Promise((resolve) => setTimeout(resolve, 300));
          onCpu(0, `${events(20)} getpriority(0, ${process.pid});`);
        } finally {
          process.kill(runner.pid as number, 'SIGCONT');
        }
        await until(
          'every event and a tick',
          () =>
            lines.filter((raw) => raw.includes('ev\\t')).length === 60 &&
            tickTimes(lines).length > 0,
        );
        await new Promise((resolve) => setTimeout(resolve, 300));
        // Each event line, and whether a tick newer than it came before it.
        let newestTick = 0n;
        const overtaken: string[] = [];
        for (const raw of lines) {
          const tick = tickTimes([raw])[0];
          if (tick !== undefined && tick > newestTick) newestTick = tick;
          const event = /ev\\t(\d+)\\t(\d+)/.exec(raw);
          if (event && BigInt(event[1] as string) < newestTick) overtaken.push(`cpu ${event[2]}`);
        }
        expect(overtaken).toEqual([]);
      },
    );

    it("the CRI reader: a line it cannot read goes on as it came, and trace_pipe's LOST as lost events", {
      timeout: 60_000,
    }, async () => {
      const inspection = await inspectContainerd(containerd);
      if ('error' in inspection) throw new Error(inspection.error);
      const lines: string[] = [];
      let attached = false;
      const runner = new UprobeEventsRunner(
        'cri:unreadable-test',
        inspection,
        {
          line: (raw) => lines.push(raw),
          attached: () => {
            attached = true;
          },
          died: (message) => lines.push(`died: ${message}`),
        },
        96,
      );
      expect(runner.start()).toBeNull();
      stops.push(() => runner.stop());
      const instance = join(tracefs, 'instances', `podwire_${process.pid}_96`);
      // A buffer of one page per CPU, so that what is written while the reader is stopped overflows it.
      writeFileSync(join(instance, 'buffer_size_kb'), '4');
      await until('the reader', () => attached && runner.readerPid !== undefined);
      const marker = join(instance, 'trace_marker');
      appendFileSync(marker, 'not a uprobe event\n');
      await until('the unreadable line', () => lines.some((l) => l.includes('not a uprobe event')));
      const reader = runner.readerPid as number;
      process.kill(reader, 'SIGSTOP');
      try {
        for (let i = 0; i < 2000; i++) appendFileSync(marker, `filler ${i} ${'x'.repeat(64)}\n`);
      } finally {
        process.kill(reader, 'SIGCONT');
      }
      await until('a lost-events line', () => lines.some((l) => /^Lost \d+ events$/.test(l)));
      const lost = lines.find((l) => /^Lost \d+ events$/.test(l)) as string;
      expect(parseBpftraceLine(lost)).toEqual({ type: 'lost', count: expect.any(Number) });
      expect(
        parseBpftraceLine(lines.find((l) => l.includes('not a uprobe event')) as string).type,
      ).toBe('malformed');
    });

    it('the CRI reader: tick() writes its trace_marker and the tick comes back through trace_pipe, timed', {
      timeout: 60_000,
    }, async () => {
      const inspection = await inspectContainerd(containerd);
      if ('error' in inspection) throw new Error(inspection.error);
      const lines: string[] = [];
      const deaths: string[] = [];
      let attachments = 0;
      const runner = new UprobeEventsRunner(
        'cri:tick-test',
        inspection,
        {
          line: (raw) => lines.push(raw),
          attached: () => {
            attachments++;
          },
          died: (message) => deaths.push(message),
        },
        97,
      );
      expect(runner.start()).toBeNull();
      stops.push(() => runner.stop());
      // Said after start() returned, never from inside it: the caller may not be ready for it before.
      expect(attachments).toBe(0);
      await until('attached', () => attachments === 1);
      expect(runner.tickMode).toBe(true);
      // The reader (cat) may need a moment to open trace_pipe; a tick written before is still in the buffer.
      const before = process.hrtime.bigint();
      runner.tick();
      const after = process.hrtime.bigint();
      await until('a tick line from trace_pipe', () => tickTimes(lines).length > 0);
      const [tick] = tickTimes(lines);
      expect(tick as bigint).toBeGreaterThanOrEqual(before);
      expect(tick as bigint).toBeLessThanOrEqual(after);

      // A reader that ends by itself is said so and started again, and answers ticks again.
      const reader = runner.readerPid as number;
      process.kill(reader, 'SIGKILL');
      await until('the reader to be started again', () => attachments === 2);
      expect(deaths).toEqual([
        expect.stringMatching(/ended by itself \(SIGKILL\); reading again in 1 s/),
      ]);
      expect(runner.readerPid).not.toBe(reader);
      runner.tick();
      await until('a tick from the new reader', () => tickTimes(lines).length > 1);
      await runner.stop();
      expect(existsSync(join(tracefs, 'instances', `podwire_${process.pid}_97`))).toBe(false);
    });
  },
);
