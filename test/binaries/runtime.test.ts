// What podwire learns about a containerd binary before probing it, checked against the binary's own code.
// Where its CRI calls start and return, and where their request and reply fields sit.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseElf, vaddrToFileOffset } from '../../src/binaries/elf.js';
import {
  disassemble,
  functionByName,
  type GoFunction,
  goFunctions,
} from '../../src/binaries/gosym.js';
import {
  CRI_METHODS,
  criCallLayout,
  inspectContainerd,
  type RuntimeInspection,
} from '../../src/binaries/runtime.js';
import { expectEntryProbe } from './entry-probe.js';
import {
  requireSuite,
  sidContainerd as SID_CONTAINERD,
  trixieContainerd as TRIXIE_CONTAINERD,
} from './suites.js';

const DEBIAN_CONTAINERD = '/usr/bin/containerd';
const hasObjdump = (() => {
  try {
    execFileSync('objdump', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const scratch = mkdtempSync(join(tmpdir(), 'podwire-runtime-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

async function inspect(binary: string): Promise<RuntimeInspection> {
  const result = await inspectContainerd(binary);
  if ('error' in result) throw new Error(result.error);
  return result;
}

/** Every method probed once in each of `servers` CRI servers, each point where the file and objdump say. */
async function expectConsistentPoints(
  inspection: RuntimeInspection,
  binary: string,
  servers = 1,
): Promise<void> {
  const data = readFileSync(binary);
  const elf = parseElf(data);
  if (typeof elf === 'string') throw new Error(elf);
  const table = goFunctions(elf);
  if (typeof table === 'string') throw new Error(table);
  expect(inspection.missing).toEqual([]);
  expect(inspection.points.map((p) => p.method)).toEqual(
    CRI_METHODS.flatMap((method) => new Array<string>(servers).fill(method)),
  );
  for (const point of inspection.points) {
    expect(point.kind).toBe('criService');
    expect(vaddrToFileOffset(elf, point.entryAddress)).toBe(point.entryOffset);
    const fn = functionByName(table, point.symbol);
    if (!fn) throw new Error(`${point.symbol} not in the function table`);
    // Every CRI handler starts with a stack check: the entry probe is on its jump (no single-step).
    expect(await expectEntryProbe(binary, elf, fn, point.entryOffset)).toMatch(/^j(b|be)\s/);
    expect(point.returnOffsets.length).toBeGreaterThan(0);
    expect(point.returnOffsets.length).toBe(point.returnAddresses.length);
    point.returnOffsets.forEach((offset, i) => {
      expect(data[offset]).toBe(0xc3);
      expect(offset - point.entryOffset).toBe((point.returnAddresses[i] ?? 0) - point.entryAddress);
    });
  }
}

describe.skipIf(!existsSync(DEBIAN_CONTAINERD) || !hasObjdump)(
  `containerd 1.6 from Debian${existsSync(DEBIAN_CONTAINERD) && hasObjdump ? '' : ' (skipped: needs /usr/bin/containerd and objdump: npm run setup installs them)'}`,
  () => {
    let inspection: RuntimeInspection;
    beforeAll(async () => {
      inspection = await inspect(DEBIAN_CONTAINERD);
    }, 30_000);

    it('names version, Go and the gogo message layout', () => {
      expect(inspection.runtime).toBe('containerd');
      expect(inspection.version).toMatch(/^1\.6\.\d+/);
      expect(inspection.goVersion).toMatch(/^go1\.19\./);
      expect(inspection.criApiVersion).toBeNull(); // GOPATH build: no module list to read it from
      expect(inspection.messageShift).toBe(0);
      expect(inspection.notes.join('\n')).toMatch(/messageShift 0 measured/);
    });

    it('chooses (*criService) for every method, with entry and RET offsets that match the file and objdump', async () => {
      await expectConsistentPoints(inspection, DEBIAN_CONTAINERD);
      const run = inspection.points.find((p) => p.method === 'RunPodSandbox');
      expect(run?.symbol).toBe(
        'github.com/containerd/containerd/pkg/cri/server.(*criService).RunPodSandbox',
      );
      // The function starts at 0x1d992c0 (see gosym.test.ts): mov r12,rsp; sub r12,0x1928 (10 bytes), then the
      // probe, on the jb of that stack check.
      expect(run?.entryAddress).toBe(0x1d992ca);
      expect(run?.entryOffset).toBe(0x19992ca);
    });
  },
);

describe.skipIf(!hasObjdump)(
  `containerd 1.7 from Debian trixie${hasObjdump ? '' : ' (skipped: needs objdump: npm run setup installs it)'}`,
  () => {
    let inspection: RuntimeInspection;
    beforeAll(async () => {
      requireSuite('trixie');
      inspection = await inspect(TRIXIE_CONTAINERD);
    }, 60_000);

    it('names version, Go and the gogo message layout, measured in its unvendored cri-api', () => {
      expect(inspection.version).toMatch(/^1\.7\.\d+/);
      expect(inspection.goVersion).toMatch(/^go1\.2\d\./);
      expect(inspection.criApiVersion).toBeNull();
      expect(inspection.messageShift).toBe(0);
      expect(inspection.notes.join('\n')).toMatch(
        /messageShift 0 measured: k8s\.io\/cri-api\/pkg\/apis\/runtime\/v1\.\(\*PodSandboxMetadata\)\.GetUid/,
      );
    });

    it('probes both CRI servers, pkg/cri/server and the sbserver that ENABLE_CRI_SANDBOXES selects, at their ELF symbols', async () => {
      await expectConsistentPoints(inspection, TRIXIE_CONTAINERD, 2);
      for (const method of CRI_METHODS) {
        expect(inspection.points.filter((p) => p.method === method).map((p) => p.symbol)).toEqual([
          `github.com/containerd/containerd/pkg/cri/server.(*criService).${method}`,
          `github.com/containerd/containerd/pkg/cri/sbserver.(*criService).${method}`,
        ]);
      }
      const notes = inspection.notes.join('\n');
      expect(notes).toMatch(/both are probed, only the serving one fires/);
      // Debian's 1.7 keeps its ELF symbols: bpftrace could resolve the addresses without --unsafe.
      expect(notes).not.toMatch(/--unsafe/);
    }, 60_000);
  },
);

describe.skipIf(!hasObjdump)(
  `containerd 2.x from Debian sid${hasObjdump ? '' : ' (skipped: needs objdump: npm run setup installs it)'}`,
  () => {
    let inspection: RuntimeInspection;
    beforeAll(async () => {
      requireSuite('sid');
      inspection = await inspect(SID_CONTAINERD);
    }, 30_000);

    it('finds the 2.x handlers and an unstamped version', async () => {
      await expectConsistentPoints(inspection, SID_CONTAINERD);
      for (const point of inspection.points) {
        expect(point.symbol).toBe(
          `github.com/containerd/containerd/v2/internal/cri/server.(*criService).${point.method}`,
        );
      }
      expect(inspection.version).toMatch(/^2\.\d+\.\d+/);
      expect(inspection.messageShift).toBe(0);
      // No ELF symbols: bpftrace cannot resolve a virtual address there.
      expect(inspection.notes.join('\n')).toMatch(/--unsafe/);
    });
  },
);

/** The offset a cri-api getter loads from its receiver (RAX): `mov 0x10(%rax),%rcx` gives 16. */
async function getterOffset(binary: string, fn: GoFunction): Promise<number> {
  const lines = await disassemble(binary, fn);
  if (!Array.isArray(lines)) throw new Error(lines.error);
  for (const { text } of lines) {
    const match = /^mov[lq]?\s+(?:0x([0-9a-f]+))?\(%rax\),/.exec(text);
    if (match) return match[1] ? Number.parseInt(match[1], 16) : 0;
  }
  throw new Error(`${fn.name} loads nothing from its receiver`);
}

describe.skipIf(!existsSync(DEBIAN_CONTAINERD) || !hasObjdump)(
  `request and response layout, checked against the binary's own cri-api getters${existsSync(DEBIAN_CONTAINERD) && hasObjdump ? '' : ' (skipped: needs /usr/bin/containerd and objdump)'}`,
  () => {
    let find: (member: string) => GoFunction;
    beforeAll(() => {
      const elf = parseElf(readFileSync(DEBIAN_CONTAINERD));
      if (typeof elf === 'string') throw new Error(elf);
      const table = goFunctions(elf);
      if (typeof table === 'string') throw new Error(table);
      find = (member) => {
        const fn = table.functions.find((f) =>
          f.name.endsWith(`/vendor/k8s.io/cri-api/pkg/apis/runtime/v1.${member}`),
        );
        if (!fn) throw new Error(`no ${member}`);
        return fn;
      };
    });

    const last = (offsets: number[]) => offsets[offsets.length - 1];

    it('RunPodSandbox: request Config -> Metadata -> Name/Uid/Namespace/Attempt, response PodSandboxId', async () => {
      const layout = criCallLayout('RunPodSandbox', 0);
      expect(layout.requestRegister).toBe('di');
      expect(layout.responseRegister).toBe('ax');
      const { podName, podUid, podNamespace, attempt } = layout.requestFields;
      expect(podUid?.offsets.slice(0, 2)).toEqual([
        await getterOffset(DEBIAN_CONTAINERD, find('(*RunPodSandboxRequest).GetConfig')),
        await getterOffset(DEBIAN_CONTAINERD, find('(*PodSandboxConfig).GetMetadata')),
      ]);
      expect(last(podName?.offsets ?? [])).toBe(
        await getterOffset(DEBIAN_CONTAINERD, find('(*PodSandboxMetadata).GetName')),
      );
      expect(last(podUid?.offsets ?? [])).toBe(
        await getterOffset(DEBIAN_CONTAINERD, find('(*PodSandboxMetadata).GetUid')),
      );
      expect(last(podNamespace?.offsets ?? [])).toBe(
        await getterOffset(DEBIAN_CONTAINERD, find('(*PodSandboxMetadata).GetNamespace')),
      );
      expect(last(attempt?.offsets ?? [])).toBe(
        await getterOffset(DEBIAN_CONTAINERD, find('(*PodSandboxMetadata).GetAttempt')),
      );
      expect(last(layout.responseFields.podSandboxId?.offsets ?? [])).toBe(
        await getterOffset(DEBIAN_CONTAINERD, find('(*RunPodSandboxResponse).GetPodSandboxId')),
      );
    });

    it('Stop/Remove/CreateContainer/StartContainer: the id is the first field', async () => {
      const cases: [Parameters<typeof criCallLayout>[0], string, string][] = [
        ['StopPodSandbox', 'podSandboxId', '(*StopPodSandboxRequest).GetPodSandboxId'],
        ['RemovePodSandbox', 'podSandboxId', '(*RemovePodSandboxRequest).GetPodSandboxId'],
        ['CreateContainer', 'podSandboxId', '(*CreateContainerRequest).GetPodSandboxId'],
        ['StartContainer', 'containerId', '(*StartContainerRequest).GetContainerId'],
      ];
      for (const [method, field, getter] of cases) {
        const offsets = criCallLayout(method, 0).requestFields[field]?.offsets;
        expect(offsets, method).toEqual([await getterOffset(DEBIAN_CONTAINERD, find(getter))]);
      }
      expect(criCallLayout('CreateContainer', 0).responseFields.containerId?.offsets).toEqual([
        await getterOffset(DEBIAN_CONTAINERD, find('(*CreateContainerResponse).GetContainerId')),
      ]);
    });
  },
);

describe('CRI call layout', () => {
  it('shifts every field by the protoimpl.MessageState of cri-api v0.34+', () => {
    expect(criCallLayout('RunPodSandbox', 8).requestFields.podUid?.offsets).toEqual([8, 8, 24]);
    expect(criCallLayout('RunPodSandbox', 8).requestFields.attempt).toEqual({
      offsets: [8, 8, 56],
      kind: 'uint32',
    });
    expect(criCallLayout('StopPodSandbox', 8).requestFields.podSandboxId?.offsets).toEqual([8]);
  });

  it('has no request fields at the gRPC handler, whose reply is an interface', () => {
    const layout = criCallLayout('RunPodSandbox', 0, 'grpcHandler');
    expect(layout.requestRegister).toBeNull();
    expect(layout.requestFields).toEqual({});
    expect(layout.responseRegister).toBe('bx');
    expect(layout.errorRegister).toBe('cx');
  });
});

describe('binaries that are not containerd', () => {
  it('explains a C program in one line', async () => {
    const result = await inspectContainerd('/bin/true');
    expect(result).toHaveProperty('error');
    const { error } = result as { error: string };
    expect(error).toMatch(/\.gopclntab/);
    expect(error.split('\n')).toHaveLength(1);
  });

  it.skipIf(!existsSync('/usr/lib/cni/bridge'))(
    `tells a Go binary without CRI handlers apart${existsSync('/usr/lib/cni/bridge') ? '' : ' (skipped: needs /usr/lib/cni/bridge, a Go program)'}`,
    async () => {
      const result = await inspectContainerd('/usr/lib/cni/bridge');
      expect(result).toMatchObject({ error: expect.stringMatching(/without CRI handlers/) });
    },
  );

  it('explains a missing file and a random one, without throwing', async () => {
    expect(await inspectContainerd(join(scratch, 'absent'))).toMatchObject({
      error: expect.stringMatching(/ENOENT/),
    });
    const noise = join(scratch, 'noise');
    writeFileSync(noise, Buffer.alloc(4096, 7));
    expect(await inspectContainerd(noise)).toMatchObject({
      error: expect.stringMatching(/not an ELF file/),
    });
  });

  it.skipIf(!existsSync(DEBIAN_CONTAINERD))(
    `explains a truncated containerd${existsSync(DEBIAN_CONTAINERD) ? '' : ' (skipped: needs /usr/bin/containerd)'}`,
    async () => {
      const cut = join(scratch, 'cut');
      writeFileSync(cut, readFileSync(DEBIAN_CONTAINERD).subarray(0, 30 << 20));
      const result = await inspectContainerd(cut);
      expect(result).toHaveProperty('error');
    },
  );
});
