// CRI uprobes through tracefs: the event definitions podwire writes (reading trace_pipe back: test/decode/trace-pipe.test.ts).
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { inspectContainerd } from '../../src/binaries/runtime.js';
import { criEventDefinitions } from '../../src/probes/uprobe-events.js';
import { requireSuite, trixieContainerd } from '../binaries/suites.js';

const containerd = '/usr/bin/containerd';
const haveContainerd = existsSync(containerd);

describe.skipIf(!haveContainerd)(
  `uprobe event definitions for containerd 1.6${haveContainerd ? '' : ' (skipped: needs /usr/bin/containerd: npm run setup installs it)'}`,
  () => {
    it('probes RunPodSandbox at its start (file offset of the jump of its stack check) with the pod identity, and at every RET with the reply', async () => {
      const inspection = await inspectContainerd(containerd);
      if ('error' in inspection) throw new Error(inspection.error);
      const definitions = criEventDefinitions(inspection, 'podwire_1_0');
      const entry = definitions.find((d) => d.event === 'RunPodSandbox_in');
      // Request r in RDI -> Config -> Metadata -> Name/Uid/Namespace Go strings at 0/16/32 (cri-api v0.25 layout).
      expect(entry?.line).toBe(
        `p:podwire_1_0/RunPodSandbox_in ${containerd}:0x19992ca g=%r14:x64 ` +
          'name_len=+8(+0(+0(%di))):u64 name=+0(+0(+0(+0(%di)))):string ' +
          'uid_len=+24(+0(+0(%di))):u64 uid=+0(+16(+0(+0(%di)))):string ' +
          'namespace_len=+40(+0(+0(%di))):u64 namespace=+0(+32(+0(+0(%di)))):string',
      );
      const returns = definitions.filter((d) => d.method === 'RunPodSandbox' && d.side === 'out');
      expect(returns).toHaveLength(36);
      for (const ret of returns)
        expect(ret.line).toMatch(
          / g=%r14:x64 err=%bx:x64 id_len=\+8\(%ax\):u64 id=\+0\(\+0\(%ax\)\):x8\[64\]$/,
        );
      expect(new Set(definitions.map((d) => d.event)).size).toBe(definitions.length);
    });
  },
);

describe('uprobe event definitions for containerd 1.7 from Debian trixie', () => {
  it('gives the second CRI server (sbserver) events of its own, on its own functions', async () => {
    requireSuite('trixie');
    const inspection = await inspectContainerd(trixieContainerd);
    if ('error' in inspection) throw new Error(inspection.error);
    const definitions = criEventDefinitions(inspection, 'podwire_1_0');
    expect(new Set(definitions.map((d) => d.event)).size).toBe(definitions.length);
    const entries = definitions.filter((d) => d.method === 'RunPodSandbox' && d.side === 'in');
    expect(entries.map((d) => d.event)).toEqual(['RunPodSandbox_in', 'RunPodSandbox_1_in']);
    const [server, sbserver] = inspection.points.filter((p) => p.method === 'RunPodSandbox');
    expect(entries[1]?.line).toContain(
      `${trixieContainerd}:0x${sbserver?.entryOffset.toString(16)} g=%r14:x64 name_len=`,
    );
    expect(entries[0]?.line).toContain(`:0x${server?.entryOffset.toString(16)} `);
    const returns = definitions.filter((d) => /^RunPodSandbox_1_out\d+$/.test(d.event));
    expect(returns).toHaveLength(sbserver?.returnOffsets.length ?? -1);
  }, 60_000);
});
