// CRI uprobes through tracefs: the event definitions podwire writes (reading trace_pipe back: test/decode/trace-pipe.test.ts).
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { inspectContainerd } from '../../src/binaries/runtime.js';
import { criEventDefinitions } from '../../src/probes/uprobe-events.js';

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
