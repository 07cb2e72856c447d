// The probe runner's handling of a bpftrace that does not end on SIGINT. bpftrace 0.17 misses a SIGINT that comes
// while it prints, and a reload would wait for it forever; the real one does so rarely and at random, so a
// stand-in that ignores SIGINT plays it here.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readyLine } from '../../src/probes/program.js';
import { ProbeRunner } from '../../src/probes/runner.js';
import { until } from './running.js';

const scratch = mkdtempSync(join(tmpdir(), 'podwire-runner-test-'));
/** Says it attached, then waits, ignoring SIGINT (exec keeps the ignored disposition: one process, our child). */
const deaf = join(scratch, 'deaf-bpftrace');
writeFileSync(
  deaf,
  `#!/bin/sh\ntrap '' INT\necho '{"type": "printf", "data": "${readyLine}\\\\n"}'\nexec sleep 600\n`,
);
chmodSync(deaf, 0o755);

describe('a bpftrace that does not end on SIGINT', () => {
  const runners: ProbeRunner[] = [];
  afterAll(async () => {
    for (const runner of runners) await runner.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('is ended with SIGKILL 5 s after a reload asked it to stop, and the new program starts', {
    timeout: 30_000,
  }, async () => {
    let attached = 0;
    const runner = new ProbeRunner(
      'deaf',
      'BEGIN { }',
      { line: () => undefined, attached: () => attached++, died: () => undefined },
      { bpftrace: deaf, pollLibrary: null },
    );
    runners.push(runner);
    runner.start();
    await until('the first start', () => attached === 1);
    const first = runner.pid;
    const reloading = Date.now();
    runner.reload('BEGIN { }');
    await until('the program started again', () => attached === 2, 15_000);
    expect(runner.pid).not.toBe(first);
    expect(Date.now() - reloading).toBeGreaterThanOrEqual(4_900);
    expect(() => process.kill(first as number, 0)).toThrow();
  });
});
