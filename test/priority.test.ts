// podwire's CPU policy: real processes set to SCHED_IDLE and back by chrt, and when the daemon changes it.
import { type ChildProcess, spawn } from 'node:child_process';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type CpuPolicy, CpuPolicyControl, cpuPolicyOf, setCpuPolicy } from '../src/priority.js';
import { perfPagesPerCpu } from '../src/probes/runner.js';

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)(
  'setCpuPolicy on real processes (root: leaving SCHED_IDLE needs it)',
  () => {
    let child: ChildProcess | null = null;
    afterEach(() => {
      child?.kill();
      child = null;
    });

    it('sets every thread of a process to SCHED_IDLE and back to normal, and skips a process that is gone', () => {
      child = spawn('sleep', ['30'], { stdio: 'ignore' });
      const pid = child.pid as number;
      expect(cpuPolicyOf(pid)).toBe('normal');
      expect(setCpuPolicy([pid], 'idle')).toBeNull();
      expect(cpuPolicyOf(pid)).toBe('idle');
      expect(setCpuPolicy([pid], 'normal')).toBeNull();
      expect(cpuPolicyOf(pid)).toBe('normal');
      // A pid that is not there (pid_max is at most 2^22).
      expect(setCpuPolicy([4_194_305], 'idle')).toBeNull();
    });
  },
);

describe('CpuPolicyControl', () => {
  afterEach(() => vi.useRealTimers());

  /** A stand-in for chrt that records what it was asked (the real one is tested above). */
  function control(fail: string | null = null) {
    const applied: { pids: number[]; policy: CpuPolicy }[] = [];
    const said: string[] = [];
    const cpu = new CpuPolicyControl(
      { children: () => [111, 222], say: (message) => said.push(message) },
      60_000,
      (pids, policy) => {
        applied.push({ pids, policy });
        return fail;
      },
    );
    return { cpu, applied, said };
  }

  it('starts idle, goes normal on lost events for a minute after the last loss, then idle again', () => {
    vi.useFakeTimers();
    const { cpu, applied, said } = control();
    cpu.start();
    expect(cpu.policy).toBe('idle');
    expect(applied).toEqual([{ pids: [process.pid, 111, 222], policy: 'idle' }]);
    cpu.eventsLost();
    expect(cpu.policy).toBe('normal');
    expect(said).toEqual([expect.stringMatching(/events were lost at idle priority.*60 s/)]);
    vi.advanceTimersByTime(40_000);
    cpu.eventsLost(); // more losses: the minute starts again, nothing applied twice
    vi.advanceTimersByTime(40_000);
    expect(cpu.policy).toBe('normal');
    expect(applied.map((a) => a.policy)).toEqual(['idle', 'normal']);
    vi.advanceTimersByTime(20_001);
    expect(cpu.policy).toBe('idle');
    expect(applied.map((a) => a.policy)).toEqual(['idle', 'normal', 'idle']);
    expect(said.at(-1)).toMatch(/no events lost for 60 s: back to idle priority/);
    cpu.stop();
  });

  it('says once why it cannot, and then leaves the priority alone', () => {
    const { cpu, applied, said } = control('chrt is not installed');
    cpu.start();
    cpu.eventsLost();
    expect(applied).toHaveLength(1);
    expect(said).toEqual(['cannot run at idle priority: chrt is not installed']);
  });
});

describe('perfPagesPerCpu', () => {
  it('gives small nodes room for bursts and keeps big ones near 16 MiB, in powers of two', () => {
    expect([1, 2, 4, 8, 16, 48, 64, 96, 256].map((cpus) => perfPagesPerCpu(cpus))).toEqual([
      512, 512, 512, 512, 256, 64, 64, 64, 64,
    ]);
  });
});
