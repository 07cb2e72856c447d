// Ticks: how podwire learns how far each probe program has been read (probes/tick.bt, the CRI reader's
// trace_marker). Real bpftrace and real tracefs, as root.
import { existsSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseBpftraceLine } from '../../src/probes/lines.js';
import { probesDir, readyLine } from '../../src/probes/program.js';
import { ProbeRunner } from '../../src/probes/runner.js';
import { inspectContainerd } from '../../src/probes/runtime.js';
import { tracefs, UprobeEventsRunner } from '../../src/probes/uprobe-events.js';
import { isRoot } from '../lab/node.js';

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

async function until(what: string, done: () => boolean, ms = 20_000): Promise<void> {
  const start = Date.now();
  while (!done()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe.skipIf(why !== '')(
  `ticks from real probe programs${why ? ` (skipped: ${why})` : ''}`,
  () => {
    const stops: (() => Promise<void>)[] = [];
    afterAll(async () => {
      for (const stop of stops) await stop();
    });

    it("tick.bt: a getpriority for the daemon's own pid gives one tick, timed between before and after the call", {
      timeout: 60_000,
    }, async () => {
      const fragment = readFileSync(join(probesDir(), 'tick.bt'), 'utf8').replaceAll(
        '{{DAEMON_PID}}',
        String(process.pid),
      );
      const lines: string[] = [];
      let attached = false;
      const runner = new ProbeRunner(
        'tick-test',
        `${fragment}\nBEGIN { printf("${readyLine}\\n"); }\n`,
        {
          line: (raw) => lines.push(raw),
          attached: () => {
            attached = true;
          },
          died: (message) => lines.push(`died: ${message}`),
        },
      );
      stops.push(() => runner.stop());
      runner.start();
      await until('bpftrace to attach', () => attached);
      // Someone else's priority (pid 1) asks for nothing.
      getPriority(1);
      const before = process.hrtime.bigint();
      getPriority(process.pid);
      const after = process.hrtime.bigint();
      await until('a tick line', () => tickTimes(lines).length > 0);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const ticks = tickTimes(lines);
      expect(ticks).toHaveLength(1);
      expect(ticks[0] as bigint).toBeGreaterThanOrEqual(before);
      expect(ticks[0] as bigint).toBeLessThanOrEqual(after);
    });

    it('the CRI reader: tick() writes its trace_marker and the tick comes back through trace_pipe, timed', {
      timeout: 60_000,
    }, async () => {
      const inspection = await inspectContainerd(containerd);
      if ('error' in inspection) throw new Error(inspection.error);
      const lines: string[] = [];
      const deaths: string[] = [];
      let ticks: boolean | null = null;
      let attachments = 0;
      const runner = new UprobeEventsRunner(
        'cri:tick-test',
        inspection,
        {
          line: (raw) => lines.push(raw),
          attached: (_probes, answers) => {
            ticks = answers;
            attachments++;
          },
          died: (message) => deaths.push(message),
        },
        97,
      );
      expect(runner.attach()).toBeNull();
      stops.push(() => runner.stop());
      runner.read();
      expect(ticks).toBe(true);
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
