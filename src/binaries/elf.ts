// A minimal ELF64 little-endian reader: just enough to find Go's tables and turn addresses into uprobe file offsets.
//
// Pure functions over a Buffer. Malformed input gives an error string, never an exception.

export const PT_LOAD = 1;
export const PF_X = 1;
export const PF_W = 2;
export const SHT_NOBITS = 8;
export const ET_DYN = 3;
const SHT_SYMTAB = 2;
const SHT_RELA = 4;
const SHT_DYNSYM = 11;
const R_X86_64_RELATIVE = 8;

export interface ElfSection {
  name: string;
  type: number;
  flags: number;
  addr: number;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

export interface ElfSegment {
  type: number;
  flags: number;
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
}

export interface ElfImage {
  data: Buffer;
  /** e_type: 2 = EXEC, 3 = DYN (PIE or shared object). */
  type: number;
  machine: number;
  sections: ElfSection[];
  segments: ElfSegment[];
}

export interface ElfSymbol {
  name: string;
  value: number;
  size: number;
}

/** Thrown only inside this module's parsers and turned into an error string at their edge. */
class ElfFormatError extends Error {}

function u64(data: Buffer, offset: number): number {
  if (offset < 0 || offset + 8 > data.length)
    throw new ElfFormatError(`read past end at ${offset}`);
  const value = data.readBigUInt64LE(offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER))
    throw new ElfFormatError(`value too large at ${offset}`);
  return Number(value);
}

function u32(data: Buffer, offset: number): number {
  if (offset < 0 || offset + 4 > data.length)
    throw new ElfFormatError(`read past end at ${offset}`);
  return data.readUInt32LE(offset);
}

function u16(data: Buffer, offset: number): number {
  if (offset < 0 || offset + 2 > data.length)
    throw new ElfFormatError(`read past end at ${offset}`);
  return data.readUInt16LE(offset);
}

function cString(data: Buffer, offset: number): string {
  if (offset < 0 || offset >= data.length) return '';
  const end = data.indexOf(0, offset);
  return data.toString('utf8', offset, end < 0 ? data.length : end);
}

export function parseElf(data: Buffer): ElfImage | string {
  if (data.length < 64 || data.readUInt32BE(0) !== 0x7f454c46) return 'not an ELF file';
  if (data[4] !== 2) return 'not a 64-bit ELF file (only ELF64 is supported)';
  if (data[5] !== 1) return 'not a little-endian ELF file (only little-endian is supported)';
  try {
    const type = u16(data, 16);
    const machine = u16(data, 18);
    const phoff = u64(data, 32);
    const shoff = u64(data, 40);
    const phentsize = u16(data, 54);
    let phnum = u16(data, 56);
    const shentsize = u16(data, 58);
    let shnum = u16(data, 60);
    let shstrndx = u16(data, 62);

    const segments: ElfSegment[] = [];
    if (phoff !== 0 && phentsize < 56) return `bad program header size ${phentsize}`;
    if (phnum === 0xffff && shoff !== 0) phnum = u32(data, shoff + 44); // PN_XNUM: count in section 0's sh_info
    for (let i = 0; phoff !== 0 && i < phnum; i++) {
      const at = phoff + i * phentsize;
      segments.push({
        type: u32(data, at),
        flags: u32(data, at + 4),
        offset: u64(data, at + 8),
        vaddr: u64(data, at + 16),
        filesz: u64(data, at + 32),
        memsz: u64(data, at + 40),
      });
    }

    const sections: ElfSection[] = [];
    // Loading needs only the program headers: a file whose section headers were stripped or cut off still
    // parses, with no sections, and Go's tables are then found by searching the segments.
    if (shoff !== 0 && shoff + 64 <= data.length) {
      if (shentsize < 64) return `bad section header size ${shentsize}`;
      if (shnum === 0) shnum = u64(data, shoff + 32); // extended numbering: count in section 0's sh_size
      if (shstrndx === 0xffff) shstrndx = u32(data, shoff + 40);
      if (shnum > 65536 * 16) return `implausible section count ${shnum}`;
      if (shoff + shnum * shentsize > data.length) shnum = 0;
      const raw: Omit<ElfSection, 'name'>[] = [];
      const nameOffsets: number[] = [];
      for (let i = 0; i < shnum; i++) {
        const at = shoff + i * shentsize;
        nameOffsets.push(u32(data, at));
        raw.push({
          type: u32(data, at + 4),
          flags: u64(data, at + 8),
          addr: u64(data, at + 16),
          offset: u64(data, at + 24),
          size: u64(data, at + 32),
          link: u32(data, at + 40),
          entsize: u64(data, at + 56),
        });
      }
      const strtab = raw[shstrndx];
      const names =
        strtab && strtab.type !== SHT_NOBITS
          ? data.subarray(strtab.offset, Math.min(data.length, strtab.offset + strtab.size))
          : Buffer.alloc(0);
      raw.forEach((section, i) => {
        sections.push({ name: cString(names, nameOffsets[i] ?? -1), ...section });
      });
    }
    return { data, type, machine, sections, segments };
  } catch (err) {
    if (err instanceof ElfFormatError || err instanceof RangeError) {
      return `truncated or corrupt ELF file: ${err.message}`;
    }
    return `unreadable ELF file: ${String(err)}`;
  }
}

export function sectionByName(elf: ElfImage, name: string): ElfSection | undefined {
  return elf.sections.find((s) => s.name === name);
}

/** The section's bytes in the file; NOBITS sections have none. */
export function sectionBytes(elf: ElfImage, section: ElfSection): Buffer | string {
  if (section.type === SHT_NOBITS) return `section ${section.name} has no file bytes`;
  if (section.offset + section.size > elf.data.length) {
    return `section ${section.name} runs past the end of the file (truncated?)`;
  }
  return elf.data.subarray(section.offset, section.offset + section.size);
}

/** The file bytes of a loadable segment (its filesz part). */
export function segmentBytes(elf: ElfImage, segment: ElfSegment): Buffer {
  const end = Math.min(elf.data.length, segment.offset + segment.filesz);
  return elf.data.subarray(Math.min(segment.offset, end), end);
}

export function loadSegments(elf: ElfImage): ElfSegment[] {
  return elf.segments.filter((s) => s.type === PT_LOAD);
}

/** The executable PT_LOAD segment holding vaddr (or the first executable one when vaddr is omitted). */
export function executableSegment(elf: ElfImage, vaddr?: number): ElfSegment | undefined {
  return loadSegments(elf).find(
    (s) =>
      (s.flags & PF_X) !== 0 &&
      (vaddr === undefined || (vaddr >= s.vaddr && vaddr < s.vaddr + s.filesz)),
  );
}

/**
 * File offset of a code address: what the kernel's uprobe interface (uprobe_events, perf_event_open) takes.
 * Only addresses inside an executable PT_LOAD segment qualify.
 */
export function vaddrToFileOffset(elf: ElfImage, vaddr: number): number | string {
  const segment = executableSegment(elf, vaddr);
  if (!segment) return `address 0x${vaddr.toString(16)} is not in an executable segment`;
  return vaddr - segment.vaddr + segment.offset;
}

/** Bytes at a virtual address, from whichever PT_LOAD segment maps it with file bytes. */
export function readAt(elf: ElfImage, vaddr: number, length: number): Buffer | string {
  for (const s of loadSegments(elf)) {
    if (vaddr >= s.vaddr && vaddr + length <= s.vaddr + s.filesz) {
      const start = s.offset + (vaddr - s.vaddr);
      if (start + length > elf.data.length)
        return `address 0x${vaddr.toString(16)} is past the end of the file`;
      return elf.data.subarray(start, start + length);
    }
  }
  return `address 0x${vaddr.toString(16)} (+${length}) is not backed by file bytes`;
}

/** A pointer-sized word at vaddr; in a PIE the file holds 0 there and the value sits in an R_X86_64_RELATIVE addend. */
export function readPointer(elf: ElfImage, vaddr: number, ptrSize: 4 | 8): number | string {
  const bytes = readAt(elf, vaddr, ptrSize);
  if (typeof bytes === 'string') return bytes;
  const value = ptrSize === 8 ? readU64Safe(bytes, 0) : bytes.readUInt32LE(0);
  if (typeof value === 'string') return value;
  if (value !== 0 || elf.type !== ET_DYN) return value;
  return relativeRelocation(elf, vaddr) ?? 0;
}

function readU64Safe(data: Buffer, offset: number): number | string {
  try {
    return u64(data, offset);
  } catch (err) {
    return String(err instanceof Error ? err.message : err);
  }
}

const relocationCache = new WeakMap<ElfImage, Map<number, number>>();

/** The addend of the R_X86_64_RELATIVE relocation that patches vaddr at load time, if any. */
export function relativeRelocation(elf: ElfImage, vaddr: number): number | undefined {
  let table = relocationCache.get(elf);
  if (!table) {
    table = new Map();
    for (const section of elf.sections) {
      if (section.type !== SHT_RELA) continue;
      const bytes = sectionBytes(elf, section);
      if (typeof bytes === 'string') continue;
      for (let at = 0; at + 24 <= bytes.length; at += 24) {
        const type = bytes.readUInt32LE(at + 8);
        if (type !== R_X86_64_RELATIVE) continue;
        const offset = readU64Safe(bytes, at);
        const addend = bytes.readBigInt64LE(at + 16);
        if (
          typeof offset === 'number' &&
          addend >= 0n &&
          addend <= BigInt(Number.MAX_SAFE_INTEGER)
        ) {
          table.set(offset, Number(addend));
        }
      }
    }
    relocationCache.set(elf, table);
  }
  return table.get(vaddr);
}

/** The entries of each symbol table of a kind (.symtab or .dynsym), with the string table their names are in. */
function* symbolTables(
  elf: ElfImage,
  kind: number,
): Generator<{ symbols: Buffer; strtab: Buffer }> {
  for (const section of elf.sections) {
    if (section.type !== kind) continue;
    const symbols = sectionBytes(elf, section);
    const strtabSection = elf.sections[section.link];
    if (typeof symbols === 'string' || !strtabSection) continue;
    const strtab = sectionBytes(elf, strtabSection);
    if (typeof strtab === 'string') continue;
    yield { symbols, strtab };
  }
}

/** Value and size of the Elf64_Sym at `at`; null when it is undefined (value 0) or unreadable. */
function symbolSpan(symbols: Buffer, at: number): { value: number; size: number } | null {
  const value = readU64Safe(symbols, at + 8);
  const size = readU64Safe(symbols, at + 16);
  if (typeof value !== 'number' || typeof size !== 'number' || value === 0) return null;
  return { value, size };
}

/** A symbol by exact name from .symtab, then .dynsym (Debian's containerd exports its Go symbols dynamically). */
export function findSymbol(elf: ElfImage, name: string): ElfSymbol | undefined {
  const wanted = Buffer.from(`${name}\0`);
  for (const kind of [SHT_SYMTAB, SHT_DYNSYM]) {
    for (const { symbols, strtab } of symbolTables(elf, kind)) {
      // Find the name in the string table first: one native search instead of decoding every name.
      // Any occurrence counts: linkers share a name with the tail of a longer one.
      const names = new Set<number>();
      for (let at = strtab.indexOf(wanted); at >= 0; at = strtab.indexOf(wanted, at + 1)) {
        names.add(at);
      }
      if (names.size === 0) continue;
      for (let at = 0; at + 24 <= symbols.length; at += 24) {
        if (!names.has(symbols.readUInt32LE(at))) continue;
        const span = symbolSpan(symbols, at);
        if (span) return { name, ...span };
      }
    }
  }
  return undefined;
}

/** [start, end) of every sized symbol of .symtab and .dynsym, read once per image. */
const sizedSymbolCache = new WeakMap<ElfImage, Float64Array>();

/**
 * Whether an address lies inside a symbol of .symtab or .dynsym that has a size: where bpftrace (0.17) reads a
 * `uprobe:BIN:0xN` as a virtual address and takes only a symbol's start, instead of as a file offset.
 */
export function insideSizedSymbol(elf: ElfImage, address: number): boolean {
  let ranges = sizedSymbolCache.get(elf);
  if (!ranges) {
    const found: number[] = [];
    for (const kind of [SHT_SYMTAB, SHT_DYNSYM]) {
      for (const { symbols } of symbolTables(elf, kind)) {
        for (let at = 0; at + 24 <= symbols.length; at += 24) {
          const span = symbolSpan(symbols, at);
          if (span && span.size > 0) found.push(span.value, span.value + span.size);
        }
      }
    }
    ranges = Float64Array.from(found);
    sizedSymbolCache.set(elf, ranges);
  }
  for (let i = 0; i + 1 < ranges.length; i += 2) {
    if (address >= (ranges[i] ?? 0) && address < (ranges[i + 1] ?? 0)) return true;
  }
  return false;
}
