// Real bpftrace programs run through the real runner, for the probe tests: started, waited for, their lines kept.
import { ProbeRunner, type RunnerOptions } from '../../src/probes/runner.js';

import { until } from '../until.js';

export { until };

/**
 * `program` in a real bpftrace through ProbeRunner, attached; its raw lines as they come (and a `died:` line if it
 * died). Its stop goes into `stops`, for the test file's afterAll.
 */
export async function startedProgram(
  name: string,
  program: string,
  stops: (() => Promise<void>)[],
  options: RunnerOptions = {},
  attachMs = 20_000,
): Promise<{ runner: ProbeRunner; lines: string[] }> {
  const lines: string[] = [];
  let attached = false;
  const runner = new ProbeRunner(
    name,
    program,
    {
      line: (raw) => lines.push(raw),
      attached: () => {
        attached = true;
      },
      died: (message) => lines.push(`died: ${message}`),
    },
    options,
  );
  stops.push(() => runner.stop());
  runner.start();
  await until('bpftrace to attach', () => attached, attachMs);
  return { runner, lines };
}
