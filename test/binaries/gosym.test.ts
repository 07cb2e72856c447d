// Reading Go's own tables out of real containerd binaries, and surviving files that are not what they claim.
//
// A tiny Go binary would make the best fixture for the 1.2/1.16 table formats and PIE builds, but there is no Go
// toolchain on these machines, so those paths are not exercised here (and not faked): the tables below are the
// ones real Debian builds carry. The build info parser gets a synthetic ELF, since its format is a documented blob.
//
// containerd 2.x comes from Debian sid and 1.7 from trixie, unpacked into .cache/containerd-<suite> by
// scripts/fetch-containerd.sh: their tests fail, with the reason, when it is missing (test/binaries/suites.ts).

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type ElfImage,
  executableSegment,
  findSymbol,
  parseElf,
  readPointer,
  sectionByName,
  vaddrToFileOffset,
} from '../../src/binaries/elf.js';
import {
  functionByName,
  type GoFunctionTable,
  goFunctions,
  isReturn,
  moduleVersion,
  readGoBuildInfo,
  returnOffsets,
  returnSites,
} from '../../src/binaries/gosym.js';
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

const CRI_SERVER_16 = 'github.com/containerd/containerd/pkg/cri/server.(*criService)';
const CRI_SERVER_17_SANDBOXES = 'github.com/containerd/containerd/pkg/cri/sbserver.(*criService)';
const CRI_SERVER_2 = 'github.com/containerd/containerd/v2/internal/cri/server.(*criService)';
const METHODS = [
  'RunPodSandbox',
  'StopPodSandbox',
  'RemovePodSandbox',
  'CreateContainer',
  'StartContainer',
];

function load(path: string): ElfImage {
  const elf = parseElf(readFileSync(path));
  if (typeof elf === 'string') throw new Error(`${path}: ${elf}`);
  return elf;
}

function table(elf: ElfImage): GoFunctionTable {
  const result = goFunctions(elf);
  if (typeof result === 'string') throw new Error(result);
  return result;
}

/** The first instruction's bytes at vaddr, as objdump decodes them (independent of our ELF mapping). */
function objdumpFirstInstructionBytes(binary: string, vaddr: number): Buffer {
  const out = execFileSync(
    'objdump',
    [
      '-d',
      `--start-address=0x${vaddr.toString(16)}`,
      `--stop-address=0x${(vaddr + 16).toString(16)}`,
      binary,
    ],
    { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } },
  );
  const line = out.split('\n').find((l) => new RegExp(`^\\s*${vaddr.toString(16)}:`).test(l));
  const hex = line?.split('\t')[1]?.trim().split(/\s+/).join('') ?? '';
  return Buffer.from(hex, 'hex');
}

/** The table's entries are the ELF symbols' values, on a sample of functions across the whole table. */
function expectTableAgreesWithSymbols(elf: ElfImage, functions: GoFunctionTable): void {
  let compared = 0;
  for (let i = 0; i < functions.functions.length; i += 997) {
    const fn = functions.functions[i];
    const symbol = fn && findSymbol(elf, fn.name);
    if (!fn || !symbol) continue;
    expect(symbol.value, fn.name).toBe(fn.entry);
    compared++;
  }
  expect(compared).toBeGreaterThan(20);
}

/** The entry of `name` maps to the bytes objdump shows there; its RETs, when asked, are RET instructions. */
async function expectEntryAndReturns(
  binary: string,
  elf: ElfImage,
  functions: GoFunctionTable,
  name: string,
  { returns }: { returns: boolean },
): Promise<void> {
  const fn = functionByName(functions, name);
  if (!fn) throw new Error(`${name} is not in the table`);
  expect(executableSegment(elf, fn.entry)).toBeDefined();
  const offset = vaddrToFileOffset(elf, fn.entry);
  if (typeof offset === 'string') throw new Error(offset);
  const expected = objdumpFirstInstructionBytes(binary, fn.entry);
  expect(expected.length).toBeGreaterThan(0);
  expect(elf.data.subarray(offset, offset + expected.length).equals(expected)).toBe(true);
  if (!returns) return;
  const offsets = await returnOffsets(binary, fn, elf);
  if (!Array.isArray(offsets)) throw new Error(offsets.error);
  expect(offsets.length).toBeGreaterThan(0);
  for (const ret of offsets) expect(elf.data[ret]).toBe(0xc3);
}

describe.skipIf(!existsSync(DEBIAN_CONTAINERD))(
  `containerd 1.6 from Debian${existsSync(DEBIAN_CONTAINERD) ? '' : ' (skipped: needs /usr/bin/containerd: npm run setup installs it)'}`,
  () => {
    let elf: ElfImage;
    let functions: GoFunctionTable;
    beforeAll(() => {
      elf = load(DEBIAN_CONTAINERD);
      functions = table(elf);
    });

    it('carries Go build info: go1.19, built outside module mode, so no module list', () => {
      const info = readGoBuildInfo(elf);
      if (typeof info === 'string') throw new Error(info);
      expect(info.goVersion).toMatch(/^go1\.19\./);
      expect(info.path).toBe('github.com/containerd/containerd/cmd/containerd');
      // Debian builds in GOPATH mode with the vendor tree: no `mod`/`dep` lines, hence no cri-api version here.
      expect(info.main).toBeNull();
      expect(info.deps).toEqual([]);
      expect(moduleVersion(info, 'k8s.io/cri-api')).toBeNull();
      expect(info.settings.CGO_ENABLED).toBe('1');
    });

    it('has a Go 1.18-1.19 function table whose textStart is the one runtime.firstmoduledata holds', () => {
      expect(functions.format).toBe('go1.18-1.19');
      expect(functions.magic).toBe(0xfffffff0);
      expect(functions.textStartSource).toBe('header');
      expect(functions.functions.length).toBeGreaterThan(40_000);
      // moduledata word 22 is `text`: the fallback used for Go 1.26+, checked here on a build that has both.
      const moduledata = findSymbol(elf, 'runtime.firstmoduledata');
      expect(moduledata).toBeDefined();
      expect(readPointer(elf, (moduledata?.value ?? 0) + 22 * 8, 8)).toBe(functions.textStart);
    });

    it('finds the CRI handlers where the ELF symbols put them', () => {
      for (const method of METHODS) {
        const name = `${CRI_SERVER_16}.${method}`;
        const fn = functionByName(functions, name);
        const symbol = findSymbol(elf, name);
        expect(fn, name).toBeDefined();
        expect(fn?.entry).toBe(symbol?.value);
        expect(fn && symbol && fn.end >= fn.entry + symbol.size).toBe(true);
      }
      // RunPodSandbox's entry in Debian's 1.6 build, where a uprobe on the function attaches.
      expect(functionByName(functions, `${CRI_SERVER_16}.RunPodSandbox`)?.entry).toBe(0x1d992c0);
      // The vendored cri-api is there too: the symbol names carry its vendor path.
      expect(
        functions.functions.some((f) =>
          f.name.endsWith(
            '/vendor/k8s.io/cri-api/pkg/apis/runtime/v1._RuntimeService_RunPodSandbox_Handler',
          ),
        ),
      ).toBe(true);
    });

    it('agrees with the ELF symbols on a sample across the whole table', () => {
      expectTableAgreesWithSymbols(elf, functions);
    });

    it.skipIf(!hasObjdump)(
      'maps entries into the executable segment, to the bytes objdump shows there',
      async () => {
        for (const method of METHODS)
          await expectEntryAndReturns(
            DEBIAN_CONTAINERD,
            elf,
            functions,
            `${CRI_SERVER_16}.${method}`,
            { returns: false },
          );
      },
    );

    it.skipIf(!hasObjdump)(
      'finds every RET of RunPodSandbox, each a 0xc3 byte inside the function',
      async () => {
        const fn = functionByName(functions, `${CRI_SERVER_16}.RunPodSandbox`);
        if (!fn) throw new Error('RunPodSandbox');
        const sites = await returnSites(DEBIAN_CONTAINERD, fn, elf);
        if (!Array.isArray(sites)) throw new Error(sites.error);
        expect(sites.length).toBeGreaterThan(1);
        const entryOffset = vaddrToFileOffset(elf, fn.entry) as number;
        for (const { address, offset } of sites) {
          expect(address).toBeGreaterThan(fn.entry);
          expect(address).toBeLessThan(fn.end);
          expect(offset - entryOffset).toBe(address - fn.entry);
          expect([0xc3, 0xc2]).toContain(elf.data[offset]);
        }
        // Without a parsed image it reads the file itself and gives the same offsets.
        expect(await returnOffsets(DEBIAN_CONTAINERD, fn)).toEqual(sites.map((s) => s.offset));
      },
    );
  },
);

describe('containerd 1.7 from Debian trixie', () => {
  let elf: ElfImage;
  let functions: GoFunctionTable;
  beforeAll(() => {
    requireSuite('trixie');
    elf = load(TRIXIE_CONTAINERD);
    functions = table(elf);
  });

  it('has a Go 1.20+ table whose textStart is in its header, and build info without a module list', () => {
    const info = readGoBuildInfo(elf);
    if (typeof info === 'string') throw new Error(info);
    expect(info.goVersion).toMatch(/^go1\.(2[0-9])\./);
    expect(info.path).toBe('github.com/containerd/containerd/cmd/containerd');
    // Debian builds it in GOPATH mode against its own Go library packages: no module list, no vendor path.
    expect(info.main).toBeNull();
    expect(moduleVersion(info, 'k8s.io/cri-api')).toBeNull();
    expect(functions.magic).toBe(0xfffffff1);
    expect(functions.format).toBe('go1.20+');
    expect(functions.textStartSource).toBe('header');
    const moduledata = findSymbol(elf, 'runtime.firstmoduledata');
    expect(moduledata).toBeDefined();
    expect(readPointer(elf, (moduledata?.value ?? 0) + 22 * 8, 8)).toBe(functions.textStart);
  });

  it('has both CRI servers, pkg/cri/server and pkg/cri/sbserver, where the ELF symbols put them', () => {
    for (const server of [CRI_SERVER_16, CRI_SERVER_17_SANDBOXES]) {
      for (const method of METHODS) {
        const name = `${server}.${method}`;
        const fn = functionByName(functions, name);
        const symbol = findSymbol(elf, name);
        expect(fn, name).toBeDefined();
        expect(fn?.entry).toBe(symbol?.value);
        expect(fn && symbol && fn.end >= fn.entry + symbol.size).toBe(true);
      }
    }
    for (const method of METHODS) {
      expect(
        functionByName(
          functions,
          `k8s.io/cri-api/pkg/apis/runtime/v1._RuntimeService_${method}_Handler`,
        ),
        method,
      ).toBeDefined();
    }
  });

  it('agrees with the ELF symbols on a sample across the whole table', () => {
    expectTableAgreesWithSymbols(elf, functions);
  });

  it.skipIf(!hasObjdump)(
    'maps entries to the bytes objdump shows, and finds RETs, in both servers',
    // Ten functions disassembled by objdump: past vitest's default timeout beside other test files.
    { timeout: 30_000 },
    async () => {
      for (const server of [CRI_SERVER_16, CRI_SERVER_17_SANDBOXES])
        for (const method of METHODS)
          await expectEntryAndReturns(TRIXIE_CONTAINERD, elf, functions, `${server}.${method}`, {
            returns: true,
          });
    },
  );
});

describe('containerd 2.x from Debian sid', () => {
  let elf: ElfImage;
  let functions: GoFunctionTable;
  beforeAll(() => {
    requireSuite('sid');
    elf = load(SID_CONTAINERD);
    functions = table(elf);
  });

  it('has a Go 1.20+ table with textStart 0, so runtime.text comes from .go.module', () => {
    const info = readGoBuildInfo(elf);
    if (typeof info === 'string') throw new Error(info);
    expect(info.goVersion).toMatch(/^go1\.(2[6-9]|[3-9]\d)\./);
    expect(info.path).toBe('github.com/containerd/containerd/v2/cmd/containerd');
    expect(functions.magic).toBe(0xfffffff1);
    expect(functions.format).toBe('go1.20+');
    expect(functions.textStartSource).toBe('moduledata');
    expect(sectionByName(elf, '.go.module')).toBeDefined();
    // runtime.text opens the Go part of .text; a cgo build puts C code before it.
    const text = sectionByName(elf, '.text');
    expect(functions.textStart).toBeGreaterThanOrEqual(text?.addr ?? Number.POSITIVE_INFINITY);
    expect(functions.functions[0]?.entry).toBe(functions.textStart);
  });

  it('names the 2.x handlers under v2/internal/cri/server and cri-api without a vendor path', () => {
    for (const method of METHODS) {
      expect(functionByName(functions, `${CRI_SERVER_2}.${method}`), method).toBeDefined();
      expect(
        functionByName(
          functions,
          `k8s.io/cri-api/pkg/apis/runtime/v1._RuntimeService_${method}_Handler`,
        ),
      ).toBeDefined();
    }
  });

  it.skipIf(!hasObjdump)('maps entries to the bytes objdump shows, and finds RETs', async () => {
    for (const method of METHODS)
      await expectEntryAndReturns(SID_CONTAINERD, elf, functions, `${CRI_SERVER_2}.${method}`, {
        returns: true,
      });
  });
});

describe('files that are not Go binaries', () => {
  it('reports the missing function table of a C program', () => {
    const elf = load('/bin/true');
    expect(goFunctions(elf)).toMatch(/no \.gopclntab/);
    expect(readGoBuildInfo(elf)).toMatch(/no Go build info/);
  });

  it('never throws on random bytes, ELF-looking noise or truncated files', () => {
    for (let i = 0; i < 200; i++) {
      const noise = randomBytes(64 + (i % 7) * 100);
      if (i % 2 === 0) Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]).copy(noise);
      const elf = parseElf(noise);
      if (typeof elf !== 'string') {
        expect(() => goFunctions(elf)).not.toThrow();
        expect(() => readGoBuildInfo(elf)).not.toThrow();
      }
    }
    const trueBinary = readFileSync('/bin/true');
    for (const length of [0, 10, 63, 64, 100, 1000, trueBinary.length - 1]) {
      const elf = parseElf(trueBinary.subarray(0, length));
      if (typeof elf !== 'string') expect(typeof goFunctions(elf)).toBe('string');
    }
    // Mutated headers of a real ELF.
    for (let i = 0; i < 300; i++) {
      const copy = Buffer.from(trueBinary);
      for (let k = 0; k < 4; k++) copy[16 + ((i * 7 + k * 13) % 48)] = (i * 31 + k) & 0xff;
      const elf = parseElf(copy);
      if (typeof elf !== 'string') expect(() => goFunctions(elf)).not.toThrow();
    }
    expect(parseElf(Buffer.from('hello'))).toBe('not an ELF file');
  });

  it.skipIf(!existsSync(DEBIAN_CONTAINERD))(
    `finds the tables by their headers when the section headers are gone${existsSync(DEBIAN_CONTAINERD) ? '' : ' (skipped: needs /usr/bin/containerd)'}`,
    () => {
      const data = readFileSync(DEBIAN_CONTAINERD);
      const full = table(load(DEBIAN_CONTAINERD));
      // The section header table is the last thing in the file: cutting 100 bytes leaves only the segments.
      const elf = parseElf(data.subarray(0, data.length - 100));
      if (typeof elf === 'string') throw new Error(elf);
      expect(elf.sections).toEqual([]);
      const found = table(elf);
      expect(found.address).toBe(full.address);
      expect(found.functions.length).toBe(full.functions.length);
      expect(found.functions[1000]).toEqual(full.functions[1000]);
      const info = readGoBuildInfo(elf);
      expect(typeof info === 'string' ? info : info.goVersion).toMatch(/^go1\.19\./);
    },
  );

  it.skipIf(!existsSync(DEBIAN_CONTAINERD))(
    `never throws on a truncated or corrupted containerd${existsSync(DEBIAN_CONTAINERD) ? '' : ' (skipped: needs /usr/bin/containerd)'}`,
    // 20 corrupted copies of a big binary, each parsed: past vitest's default timeout beside other test files.
    { timeout: 60_000 },
    () => {
      const data = readFileSync(DEBIAN_CONTAINERD);
      for (const length of [1 << 20, 36 << 20]) {
        const elf = parseElf(data.subarray(0, length));
        if (typeof elf === 'string') continue;
        expect(goFunctions(elf)).toEqual(expect.any(String));
        expect(() => readGoBuildInfo(elf)).not.toThrow();
      }
      const elf = load(DEBIAN_CONTAINERD);
      const pclntab = sectionByName(elf, '.gopclntab');
      if (!pclntab) throw new Error('no .gopclntab');
      for (let i = 0; i < 20; i++) {
        const copy = Buffer.from(data);
        randomBytes(8).copy(copy, pclntab.offset + 8 + (i % 8) * 8);
        randomBytes(64).copy(copy, pclntab.offset + 0x60 + i * 4096);
        const corrupt = parseElf(copy);
        if (typeof corrupt !== 'string') expect(() => goFunctions(corrupt)).not.toThrow();
      }
    },
  );
});

const BASE = 0x400000;

/**
 * A minimal ELF64 with the given sections, each at BASE + its file offset, and one writable PT_LOAD mapping the
 * whole file there (section data starts after the 64-byte header and the 56-byte program header).
 */
function elfWithSections(sections: { name: string; data: Buffer }[]): Buffer {
  const names = ['', ...sections.map((s) => s.name), '.shstrtab'];
  const shstrtab = Buffer.from(`${names.join('\0')}\0`);
  const nameOffsets = names.map((_, i) => names.slice(0, i).reduce((n, s) => n + s.length + 1, 0));
  const parts: Buffer[] = [];
  let offset = 64 + 56;
  const placed = [
    ...sections.map((s) => ({ ...s, type: 1 })),
    { name: '.shstrtab', data: shstrtab, type: 3 },
  ].map((s) => {
    const at = offset;
    parts.push(s.data);
    offset += s.data.length;
    return { ...s, offset: at };
  });
  const shoff = offset;
  const header = Buffer.alloc(64);
  header.write('\x7fELF', 0, 'latin1');
  header[4] = 2;
  header[5] = 1;
  header[6] = 1;
  header.writeUInt16LE(2, 16);
  header.writeUInt16LE(62, 18);
  header.writeBigUInt64LE(64n, 32);
  header.writeBigUInt64LE(BigInt(shoff), 40);
  header.writeUInt16LE(64, 52);
  header.writeUInt16LE(56, 54);
  header.writeUInt16LE(1, 56);
  header.writeUInt16LE(64, 58);
  header.writeUInt16LE(placed.length + 1, 60);
  header.writeUInt16LE(placed.length, 62);
  const shdrs = Buffer.alloc(64 * (placed.length + 1));
  placed.forEach((s, i) => {
    const at = 64 * (i + 1);
    shdrs.writeUInt32LE(nameOffsets[i + 1] ?? 0, at);
    shdrs.writeUInt32LE(s.type, at + 4);
    shdrs.writeBigUInt64LE(BigInt(BASE + s.offset), at + 16);
    shdrs.writeBigUInt64LE(BigInt(s.offset), at + 24);
    shdrs.writeBigUInt64LE(BigInt(s.data.length), at + 32);
  });
  const phdr = Buffer.alloc(56);
  phdr.writeUInt32LE(1, 0); // PT_LOAD
  phdr.writeUInt32LE(6, 4); // PF_R | PF_W
  phdr.writeBigUInt64LE(BigInt(BASE), 16);
  phdr.writeBigUInt64LE(BigInt(shoff), 32);
  phdr.writeBigUInt64LE(BigInt(shoff), 40);
  return Buffer.concat([header, phdr, ...parts, shdrs]);
}

function uvarintString(text: string): Buffer {
  const body = Buffer.from(text);
  const length: number[] = [];
  let n = body.length;
  while (n >= 0x80) {
    length.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  length.push(n);
  return Buffer.concat([Buffer.from(length), body]);
}

describe('Go build info blob (format of src/debug/buildinfo/buildinfo.go)', () => {
  it('reads the inline (Go 1.18+) format with modules and replacements', () => {
    const sentinel = Buffer.alloc(16, 0x30).toString('latin1');
    const modinfo = [
      'path\tgithub.com/containerd/containerd/v2/cmd/containerd',
      'mod\tgithub.com/containerd/containerd/v2\tv2.1.4\th1:abc=',
      'dep\tk8s.io/cri-api\tv0.31.2\th1:def=',
      'dep\tgithub.com/gogo/protobuf\tv1.3.2\th1:ghi=',
      '=>\tgithub.com/example/protobuf\tv1.3.3\th1:jkl=',
      'build\tCGO_ENABLED=1',
      'build\t-ldflags="-X main.x=y"',
      '',
    ].join('\n');
    const header = Buffer.alloc(32);
    header.write('\xff Go buildinf:', 0, 'latin1');
    header[14] = 8;
    header[15] = 2;
    const blob = Buffer.concat([
      header,
      uvarintString('go1.24.1'),
      uvarintString(`${sentinel}${modinfo}${sentinel}`),
    ]);
    const elf = parseElf(elfWithSections([{ name: '.go.buildinfo', data: blob }]));
    if (typeof elf === 'string') throw new Error(elf);
    const info = readGoBuildInfo(elf);
    if (typeof info === 'string') throw new Error(info);
    expect(info.goVersion).toBe('go1.24.1');
    expect(info.path).toBe('github.com/containerd/containerd/v2/cmd/containerd');
    expect(info.main).toEqual({ path: 'github.com/containerd/containerd/v2', version: 'v2.1.4' });
    expect(moduleVersion(info, 'k8s.io/cri-api')).toBe('v0.31.2');
    expect(moduleVersion(info, 'github.com/gogo/protobuf')).toBe('v1.3.3');
    expect(moduleVersion(info, 'k8s.io/nothing')).toBeNull();
    expect(info.settings).toEqual({ CGO_ENABLED: '1', '-ldflags': '"-X main.x=y"' });
  });

  it('reads the older format, whose header points at Go string headers', () => {
    const modinfo = `${'0'.repeat(16)}path\tgithub.com/containerd/containerd/cmd/containerd\nmod\tgithub.com/containerd/containerd\tv1.6.20\t\ndep\tk8s.io/cri-api\tv0.25.0\th1:x=\n${'1'.repeat(16)}`;
    // Section layout (BASE + 120 onwards): blob(32) | version header(16) | modinfo header(16) | "go1.17.13" | modinfo
    const start = BASE + 64 + 56;
    const version = Buffer.from('go1.17.13');
    const blob = Buffer.alloc(64);
    blob.write('\xff Go buildinf:', 0, 'latin1');
    blob[14] = 8;
    blob[15] = 0;
    blob.writeBigUInt64LE(BigInt(start + 32), 16);
    blob.writeBigUInt64LE(BigInt(start + 48), 24);
    blob.writeBigUInt64LE(BigInt(start + 64), 32);
    blob.writeBigUInt64LE(BigInt(version.length), 40);
    blob.writeBigUInt64LE(BigInt(start + 64 + version.length), 48);
    blob.writeBigUInt64LE(BigInt(modinfo.length), 56);
    const data = Buffer.concat([blob, version, Buffer.from(modinfo)]);
    const elf = parseElf(elfWithSections([{ name: '.go.buildinfo', data }]));
    if (typeof elf === 'string') throw new Error(elf);
    const info = readGoBuildInfo(elf);
    if (typeof info === 'string') throw new Error(info);
    expect(info.goVersion).toBe('go1.17.13');
    expect(info.main).toEqual({ path: 'github.com/containerd/containerd', version: 'v1.6.20' });
    expect(moduleVersion(info, 'k8s.io/cri-api')).toBe('v0.25.0');
  });

  it('reports a truncated blob instead of reading past it', () => {
    const header = Buffer.alloc(32);
    header.write('\xff Go buildinf:', 0, 'latin1');
    header[14] = 8;
    header[15] = 2;
    const blob = Buffer.concat([header, Buffer.from([0x40]), Buffer.from('go1.2')]);
    const elf = parseElf(elfWithSections([{ name: '.go.buildinfo', data: blob }]));
    if (typeof elf === 'string') throw new Error(elf);
    expect(readGoBuildInfo(elf)).toBe('truncated Go build info');
  });
});

describe('RET recognition in objdump output', () => {
  it('takes near returns with or without prefixes, and nothing else', () => {
    for (const text of [
      'ret',
      'retq',
      'ret    $0x8',
      'retq   $0x10',
      'bnd ret',
      'repz ret',
      'rep ret',
    ]) {
      expect(isReturn(text), text).toBe(true);
    }
    for (const text of [
      'lret',
      'lretq',
      'call   1d9cc52 <x>',
      'jmp    1d992c0 <ret>',
      'int3',
      'retpoline',
    ]) {
      expect(isReturn(text), text).toBe(false);
    }
  });
});
