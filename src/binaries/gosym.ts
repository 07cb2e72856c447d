// Lets podwire probe stripped Go daemons by function name: a Go binary's own tables, and the RETs of its functions.
// Build info and the .gopclntab function table are read from the file; no debug symbols are needed.
//
// The layouts follow the Go sources:
//  - src/debug/gosym/pclntab.go (Go 1.18+ version with ver118/ver120): header words after the 8-byte prefix are
//    nfunc, nfiles, textStart, funcnametab, cutab, filetab, pctab, pclntab (1.18+); nfunc, nfiles, funcnametab,
//    cutab, filetab, pctab, pclntab (1.16-1.17); the 1.2-1.15 table follows the header directly. The functab is
//    (entry, funcoff) pairs followed by one end PC: 4-byte fields relative to textStart since 1.18, pointer-sized
//    absolute PCs before. A _func starts with its entry (u32 since 1.18, uintptr before) and then nameOff (int32),
//    relative to funcnametab (1.16+) or to the table start (1.2). funcoff is relative to the pclntab word's table
//    (1.16+) or to the table start (1.2).
//  - debug/gosym ignores the header's textStart ("may be unrelocated") and takes runtime.text from its caller.
//    Go 1.26 writes 0 there; its moduledata then lives in a `.go.module` section, whose word 22 is `text`
//    (pcHeader, 6 slices, findfunctab, minpc, maxpc, text), as in runtime.firstmoduledata of older builds, where it
//    equals the header's textStart (test/binaries/gosym.test.ts checks both on one build).
//  - src/debug/buildinfo/buildinfo.go: a 32-byte header "\xff Go buildinf:", pointer size, flags; flag 2 means two
//    uvarint-prefixed strings (Go version, module info) follow inline (Go 1.18+); otherwise two pointers to Go
//    string headers. Module info is framed by 16 sentinel bytes on each side.
// Not exercised by the tests, for lack of a Go toolchain to build a tiny Go binary: the 1.2 and 1.16 formats, PIE
// builds (whose pointers come from R_X86_64_RELATIVE addends), and 4-byte pointers.

import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import {
  type ElfImage,
  ET_DYN,
  findSymbol,
  loadSegments,
  PF_W,
  PF_X,
  parseElf,
  readAt,
  readPointer,
  relativeRelocation,
  sectionByName,
  sectionBytes,
  segmentBytes,
  vaddrToFileOffset,
} from './elf.js';

export interface GoModule {
  path: string;
  version: string;
  /** The module that replaced this one (`=>` line); its version is empty for a local directory. */
  replace?: { path: string; version: string };
}

export interface GoBuildInfo {
  /** e.g. go1.19.8 */
  goVersion: string;
  /** The main package's import path (`path` line). */
  path: string | null;
  /** The main module (`mod` line); null for GOPATH builds such as Debian's, which carry no module list. */
  main: GoModule | null;
  deps: GoModule[];
  settings: Record<string, string>;
}

const BUILDINFO_MAGIC = Buffer.from('\xff Go buildinf:', 'latin1');

/** The version of a module the binary was built with, following a replacement; null if it is not listed. */
export function moduleVersion(info: GoBuildInfo, path: string): string | null {
  const mod = info.main?.path === path ? info.main : info.deps.find((d) => d.path === path);
  if (!mod) return null;
  return mod.replace?.version || mod.version || null;
}

function uvarint(data: Buffer, at: number): { value: number; next: number } | null {
  let value = 0;
  let scale = 1;
  for (let i = at; i < data.length && i < at + 8; i++) {
    const byte = data[i] ?? 0;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return { value, next: i + 1 };
    scale *= 128;
  }
  return null;
}

function findBuildInfoBlob(elf: ElfImage): Buffer | string {
  const section = sectionByName(elf, '.go.buildinfo');
  if (section) {
    const bytes = sectionBytes(elf, section);
    if (typeof bytes !== 'string' && bytes.subarray(0, 14).equals(BUILDINFO_MAGIC)) return bytes;
  }
  // Without the section the blob sits near the start of the first writable, non-executable segment, 16-aligned.
  for (const segment of loadSegments(elf)) {
    if ((segment.flags & (PF_X | PF_W)) !== PF_W) continue;
    const bytes = segmentBytes(elf, segment);
    for (
      let at = bytes.indexOf(BUILDINFO_MAGIC);
      at >= 0;
      at = bytes.indexOf(BUILDINFO_MAGIC, at + 1)
    ) {
      if ((segment.vaddr + at) % 16 === 0 && at + 32 <= bytes.length) return bytes.subarray(at);
    }
  }
  return 'no Go build info (\\xff Go buildinf:) in this binary';
}

function readGoString(elf: ElfImage, headerAddr: number, ptrSize: 4 | 8): string | null {
  const ptr = readPointer(elf, headerAddr, ptrSize);
  const len = readPointer(elf, headerAddr + ptrSize, ptrSize);
  if (typeof ptr === 'string' || typeof len === 'string' || len > 1 << 24) return null;
  if (len === 0) return '';
  const bytes = readAt(elf, ptr, len);
  return typeof bytes === 'string' ? null : bytes.toString('utf8');
}

function parseModuleLine(fields: string[]): GoModule {
  return { path: fields[1] ?? '', version: fields[2] ?? '' };
}

function parseModInfo(mod: string, info: GoBuildInfo): void {
  let last: GoModule | null = null;
  for (const line of mod.split('\n')) {
    const fields = line.split('\t');
    switch (fields[0]) {
      case 'path':
        info.path = fields[1] ?? null;
        break;
      case 'mod':
        last = parseModuleLine(fields);
        info.main = last;
        break;
      case 'dep':
        last = parseModuleLine(fields);
        info.deps.push(last);
        break;
      case '=>':
        if (last) last.replace = { path: fields[1] ?? '', version: fields[2] ?? '' };
        break;
      case 'build': {
        const setting = fields.slice(1).join('\t');
        const eq = setting.indexOf('=');
        if (eq > 0) info.settings[setting.slice(0, eq)] = setting.slice(eq + 1);
        break;
      }
    }
  }
}

/** The Go version and module list the linker embedded, as `go version -m` prints them. */
export function readGoBuildInfo(elf: ElfImage): GoBuildInfo | string {
  const blob = findBuildInfoBlob(elf);
  if (typeof blob === 'string') return blob;
  try {
    const ptrSize = blob[14];
    const flags = blob[15] ?? 0;
    if (ptrSize !== 4 && ptrSize !== 8) return `bad pointer size ${ptrSize} in Go build info`;
    let goVersion: string | null;
    let mod: string | null;
    if (flags & 2) {
      const vers = uvarint(blob, 32);
      if (!vers || vers.next + vers.value > blob.length) return 'truncated Go build info';
      goVersion = blob.toString('utf8', vers.next, vers.next + vers.value);
      const modLen = uvarint(blob, vers.next + vers.value);
      if (!modLen || modLen.next + modLen.value > blob.length) return 'truncated Go build info';
      mod = blob.toString('utf8', modLen.next, modLen.next + modLen.value);
    } else {
      if (flags & 1) return 'big-endian Go build info is not supported';
      const readWord = (at: number) =>
        ptrSize === 8 ? Number(blob.readBigUInt64LE(at)) : blob.readUInt32LE(at);
      goVersion = readGoString(elf, readWord(16), ptrSize);
      mod = readGoString(elf, readWord(16 + ptrSize), ptrSize);
    }
    if (!goVersion) return 'Go build info has no Go version';
    const info: GoBuildInfo = { goVersion, path: null, main: null, deps: [], settings: {} };
    // Strip the sentinels around the module info (cmd/go's infoStart/infoEnd), as debug/buildinfo does.
    if (mod && mod.length >= 33 && mod[mod.length - 17] === '\n') {
      parseModInfo(mod.slice(16, mod.length - 16), info);
    }
    return info;
  } catch (err) {
    return `corrupt Go build info: ${err instanceof Error ? err.message : String(err)}`;
  }
}

export interface GoFunction {
  name: string;
  /** Virtual address of the first instruction. */
  entry: number;
  /** Next function's entry (or the table's end PC): the range may end in alignment padding. */
  end: number;
}

/** The Go releases that write each table format. */
export type PclntabFormat = 'go1.2-1.15' | 'go1.16-1.17' | 'go1.18-1.19' | 'go1.20+';

export interface GoFunctionTable {
  format: PclntabFormat;
  magic: number;
  ptrSize: 4 | 8;
  /** Virtual address of the table's header. */
  address: number;
  /** runtime.text: base of the 1.18+ entry offsets (0 for older formats, whose entries are absolute). */
  textStart: number;
  textStartSource: 'header' | 'relocation' | 'moduledata' | 'absolute';
  functions: GoFunction[];
}

const MAGIC_FORMATS = new Map<number, PclntabFormat>([
  [0xfffffffb, 'go1.2-1.15'],
  [0xfffffffa, 'go1.16-1.17'],
  [0xfffffff0, 'go1.18-1.19'],
  [0xfffffff1, 'go1.20+'],
]);

class PclntabError extends Error {}

function word(data: Buffer, at: number, size: 4 | 8): number {
  if (at < 0 || at + size > data.length) throw new PclntabError(`read past end of table at ${at}`);
  if (size === 4) return data.readUInt32LE(at);
  const value = data.readBigUInt64LE(at);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new PclntabError(`value too large at ${at}`);
  return Number(value);
}

function headerLooksValid(data: Buffer): boolean {
  return (
    data.length >= 16 &&
    MAGIC_FORMATS.has(data.readUInt32LE(0)) &&
    data[4] === 0 &&
    data[5] === 0 &&
    (data[6] === 1 || data[6] === 2 || data[6] === 4) &&
    (data[7] === 4 || data[7] === 8)
  );
}

/** Finds runtime.firstmoduledata: its own section (Go 1.26+), its symbol, or the data word that points at the table. */
function findModuledata(
  elf: ElfImage,
  tableAddr: number,
  funcnameAddr: number,
  ptrSize: 4 | 8,
): number | null {
  const section = sectionByName(elf, '.go.module');
  if (section && section.size > 0) return section.addr;
  const symbol = findSymbol(elf, 'runtime.firstmoduledata');
  if (symbol) return symbol.value;
  // moduledata starts with pcHeader *pcHeader, then funcnametab []byte: look for that pointer pair.
  const needle = Buffer.alloc(ptrSize * 2);
  if (ptrSize === 8) {
    needle.writeBigUInt64LE(BigInt(tableAddr), 0);
    needle.writeBigUInt64LE(BigInt(funcnameAddr), 8);
  } else {
    needle.writeUInt32LE(tableAddr, 0);
    needle.writeUInt32LE(funcnameAddr, 4);
  }
  for (const segment of loadSegments(elf)) {
    if ((segment.flags & PF_X) !== 0) continue;
    const bytes = segmentBytes(elf, segment);
    for (let at = bytes.indexOf(needle); at >= 0; at = bytes.indexOf(needle, at + 1)) {
      if (at % ptrSize === 0) return segment.vaddr + at;
    }
  }
  return null;
}

function parsePclntab(elf: ElfImage, data: Buffer, address: number): GoFunctionTable | string {
  if (!headerLooksValid(data)) return 'bad .gopclntab header';
  const magic = data.readUInt32LE(0);
  const format = MAGIC_FORMATS.get(magic) as PclntabFormat;
  const ptrSize = data[7] as 4 | 8;
  const header = (i: number) => word(data, 8 + i * ptrSize, ptrSize);
  const nfunc = header(0);
  if (nfunc <= 0 || nfunc > 10_000_000) return `implausible function count ${nfunc} in .gopclntab`;

  const modern = format === 'go1.18-1.19' || format === 'go1.20+';
  let funcnameBase: number;
  let functabStart: number;
  let funcdataBase: number;
  let fieldSize: 4 | 8;
  if (modern) {
    funcnameBase = header(3);
    funcdataBase = header(7);
    functabStart = funcdataBase;
    fieldSize = 4;
  } else if (format === 'go1.16-1.17') {
    funcnameBase = header(2);
    funcdataBase = header(6);
    functabStart = funcdataBase;
    fieldSize = ptrSize;
  } else {
    funcnameBase = 0;
    funcdataBase = 0;
    functabStart = 8 + ptrSize;
    fieldSize = ptrSize;
  }
  if (funcnameBase >= data.length || functabStart + (2 * nfunc + 1) * fieldSize > data.length) {
    return '.gopclntab offsets point past the table (truncated file?)';
  }

  let textStart = 0;
  let textStartSource: GoFunctionTable['textStartSource'] = 'absolute';
  if (modern) {
    textStart = header(2);
    textStartSource = 'header';
    if (textStart === 0 && elf.type === ET_DYN) {
      textStart = relativeRelocation(elf, address + 8 + 2 * ptrSize) ?? 0;
      textStartSource = 'relocation';
    }
    if (textStart === 0) {
      const moduledata = findModuledata(elf, address, address + funcnameBase, ptrSize);
      const text = moduledata === null ? 0 : readPointer(elf, moduledata + 22 * ptrSize, ptrSize);
      if (typeof text !== 'number' || text === 0) {
        return 'cannot find runtime.text: the .gopclntab header has textStart 0 (Go 1.26+) and no moduledata was found';
      }
      textStart = text;
      textStartSource = 'moduledata';
    }
  }

  const functions: GoFunction[] = [];
  let previous = -1;
  for (let i = 0; i < nfunc; i++) {
    const at = functabStart + 2 * i * fieldSize;
    const entry = word(data, at, fieldSize) + textStart;
    const funcoff = word(data, at + fieldSize, fieldSize);
    const end = word(data, at + 2 * fieldSize, fieldSize) + textStart;
    if (!modern && entry === 0) {
      return '.gopclntab entries are 0: a PIE built by Go < 1.18 keeps them in relocations, which is not supported';
    }
    if (entry < previous || end < entry) {
      return `.gopclntab function table is not sorted at entry ${i} (relocated PIE table of an old Go?)`;
    }
    previous = entry;
    const nameOffAt = funcdataBase + funcoff + (modern ? 4 : ptrSize);
    if (nameOffAt + 4 > data.length) return `.gopclntab entry ${i} points past the table`;
    const nameAt = funcnameBase + data.readInt32LE(nameOffAt);
    const nameEnd = nameAt >= 0 && nameAt < data.length ? data.indexOf(0, nameAt) : -1;
    if (nameEnd < 0) return `.gopclntab entry ${i} has a bad name offset`;
    functions.push({ name: data.toString('utf8', nameAt, nameEnd), entry, end });
  }
  return { format, magic, ptrSize, address, textStart, textStartSource, functions };
}

function locatePclntab(elf: ElfImage): { data: Buffer; address: number }[] {
  for (const name of ['.gopclntab', '.data.rel.ro.gopclntab']) {
    const section = sectionByName(elf, name);
    if (!section) continue;
    const data = sectionBytes(elf, section);
    if (typeof data !== 'string') return [{ data, address: section.addr }];
  }
  // Merged into .data.rel.ro (PIE with external linking) or section headers stripped: search for the header.
  const candidates: { data: Buffer; address: number }[] = [];
  const tail = Buffer.from([0xff, 0xff, 0xff, 0x00, 0x00]);
  for (const segment of loadSegments(elf)) {
    if ((segment.flags & PF_X) !== 0) continue;
    const bytes = segmentBytes(elf, segment);
    for (
      let at = bytes.indexOf(tail, 1);
      at >= 1 && candidates.length < 64;
      at = bytes.indexOf(tail, at + 1)
    ) {
      const start = at - 1;
      if (start % 4 === 0 && headerLooksValid(bytes.subarray(start))) {
        candidates.push({ data: bytes.subarray(start), address: segment.vaddr + start });
      }
    }
  }
  return candidates;
}

/** Every function in the Go function table, with its entry address and end (the next function's entry). */
export function goFunctions(elf: ElfImage): GoFunctionTable | string {
  const candidates = locatePclntab(elf);
  if (candidates.length === 0) return 'no .gopclntab (Go function table) found: not a Go binary';
  let firstError = '';
  for (const candidate of candidates) {
    try {
      const table = parsePclntab(elf, candidate.data, candidate.address);
      if (typeof table !== 'string') return table;
      firstError ||= table;
    } catch (err) {
      firstError ||= `corrupt .gopclntab: ${err instanceof Error ? err.message : String(err)}`;
    }
  }
  return firstError;
}

const nameIndexes = new WeakMap<GoFunctionTable, Map<string, GoFunction>>();

export function functionByName(table: GoFunctionTable, name: string): GoFunction | undefined {
  let index = nameIndexes.get(table);
  if (!index) {
    index = new Map();
    for (const fn of table.functions) if (!index.has(fn.name)) index.set(fn.name, fn);
    nameIndexes.set(table, index);
  }
  return index.get(name);
}

export interface Disassembly {
  address: number;
  /** The instruction text as objdump prints it without raw bytes, e.g. `mov    0x10(%rax),%rcx`. */
  text: string;
}

const OBJDUMP_MISSING =
  'objdump not found: apt-get install binutils (podwire disassembles Go functions with it)';

/**
 * objdump's linear disassembly of [fn.entry, fn.end): Go emits no data in its text, so every line is an instruction.
 */
export function disassemble(
  binaryPath: string,
  fn: GoFunction,
): Promise<Disassembly[] | { error: string }> {
  const args = [
    '-d',
    '--no-show-raw-insn',
    `--start-address=0x${fn.entry.toString(16)}`,
    `--stop-address=0x${fn.end.toString(16)}`,
    binaryPath,
  ];
  return new Promise((resolve) => {
    execFile(
      'objdump',
      args,
      { maxBuffer: 256 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } },
      (err, stdout, stderr) => {
        if (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') return resolve({ error: OBJDUMP_MISSING });
          const why = String(stderr).trim().split('\n')[0] || err.message;
          return resolve({ error: `objdump failed on ${binaryPath}: ${why}` });
        }
        const lines: Disassembly[] = [];
        for (const line of String(stdout).split('\n')) {
          const match = /^\s*([0-9a-f]+):\s+(\S.*?)\s*$/.exec(line);
          if (!match?.[1] || !match[2]) continue;
          const address = Number.parseInt(match[1], 16);
          if (address >= fn.entry && address < fn.end) lines.push({ address, text: match[2] });
        }
        if (lines.length === 0) {
          return resolve({
            error: `objdump printed no instructions for ${fn.name} in ${binaryPath}`,
          });
        }
        resolve(lines);
      },
    );
  });
}

/**
 * The Go compiler's amd64 stack checks at a function's start, each up to its conditional jump: the bytes before the
 * jump (null: any byte there, a displacement or immediate).
 */
const stackChecks: (number | null)[][] = [
  // cmp rsp, [r14+16]
  [0x49, 0x3b, 0x66, 0x10],
  // lea r12, [rsp-disp8]; cmp r12, [r14+16]
  [0x4c, 0x8d, 0x64, 0x24, null, 0x4d, 0x3b, 0x66, 0x10],
  // lea r12, [rsp-disp32]; cmp r12, [r14+16]
  [0x4c, 0x8d, 0xa4, 0x24, null, null, null, null, 0x4d, 0x3b, 0x66, 0x10],
  // mov r12, rsp; sub r12, imm32 (a frame so big that the subtraction may wrap: jb, then the cmp)
  [0x49, 0x89, 0xe4, 0x49, 0x81, 0xec, null, null, null, null],
];

/**
 * Where a uprobe at the start of a Go function costs its callers least: on the conditional jump of the function's
 * stack check, when it begins with one the Go compiler emits on amd64; else on the entry itself.
 * At most instructions the kernel answers a uprobe's breakpoint by single-stepping a copy of the instruction, a
 * second trap; a conditional jump it emulates. On a paravirtualised guest each trap is dear (see bench/README.md,
 * uprobe-hit). Nothing before the jump changes an argument register (only R12), the stack pointer or R14 (the
 * goroutine), so what an entry probe reads is the same there. Only these exact byte sequences are accepted: the
 * probe is always on an instruction's first byte.
 */
export function entryProbeOffset(code: Uint8Array, entry: number): number {
  for (const check of stackChecks) {
    const jump = entry + check.length;
    if (!check.every((byte, i) => byte === null || code[entry + i] === byte)) continue;
    const op = code[jump] ?? -1;
    const op2 = code[jump + 1] ?? -1;
    if ((op >= 0x70 && op <= 0x7f) || (op === 0x0f && op2 >= 0x80 && op2 <= 0x8f)) return jump;
  }
  return entry;
}

const PREFIXES = new Set([
  'rep',
  'repz',
  'repe',
  'repnz',
  'repne',
  'bnd',
  'notrack',
  'data16',
  'cs',
  'ds',
]);

/** A near return (0xc3, or 0xc2 imm16), possibly behind prefixes such as `bnd` or `rep`. */
export function isReturn(text: string): boolean {
  const words = text.split(/\s+/);
  let i = 0;
  while (i < words.length && PREFIXES.has(words[i] ?? '')) i++;
  const mnemonic = words[i] ?? '';
  return mnemonic === 'ret' || mnemonic === 'retq' || mnemonic === 'retl' || mnemonic === 'retw';
}

export interface ReturnSite {
  /** Virtual address of the RET. */
  address: number;
  /** Its file offset. */
  offset: number;
}

/**
 * Every RET in fn (a Go function usually has several, one per return path), each checked against the file's
 * bytes: 0xc3, or 0xc2 imm16, after any prefix bytes. A uprobe on each replaces a uretprobe, which Go programs
 * must never get.
 */
export async function returnSites(
  binaryPath: string,
  fn: GoFunction,
  image?: ElfImage,
): Promise<ReturnSite[] | { error: string }> {
  let elf = image;
  if (!elf) {
    const data = await readFile(binaryPath).catch((err: Error) => err);
    if (data instanceof Error) return { error: `cannot read ${binaryPath}: ${data.message}` };
    const parsed = parseElf(data);
    if (typeof parsed === 'string') return { error: `${binaryPath}: ${parsed}` };
    elf = parsed;
  }
  const lines = await disassemble(binaryPath, fn);
  if (!Array.isArray(lines)) return lines;
  const sites: ReturnSite[] = [];
  for (const { address, text } of lines) {
    if (!isReturn(text)) continue;
    const offset = vaddrToFileOffset(elf, address);
    if (typeof offset === 'string') return { error: `${fn.name}: ${offset}` };
    let at = offset;
    while (at < offset + 4 && [0xf2, 0xf3, 0x66, 0x2e, 0x3e].includes(elf.data[at] ?? -1)) at++;
    const opcode = elf.data[at];
    if (opcode !== 0xc3 && opcode !== 0xc2) {
      return {
        error: `${fn.name}: objdump shows a RET at 0x${address.toString(16)} but the file has byte 0x${(opcode ?? 0).toString(16)} there: is the binary the one objdump read?`,
      };
    }
    sites.push({ address, offset });
  }
  return sites;
}

/** File offsets of every RET in fn (see returnSites). */
export async function returnOffsets(
  binaryPath: string,
  fn: GoFunction,
  image?: ElfImage,
): Promise<number[] | { error: string }> {
  const sites = await returnSites(binaryPath, fn, image);
  return Array.isArray(sites) ? sites.map((site) => site.offset) : sites;
}
