// Where to put uprobes in the CNI plugins' own binaries, to see their netlink and stdout without syscall tracepoints.
// A probe on a system-wide syscall tracepoint costs every process on the node that makes the call (bench/README.md).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { PluginChoice } from './cni-config.js';
import {
  type ElfImage,
  findSymbol,
  insideSizedSymbol,
  parseElf,
  vaddrToFileOffset,
} from './elf.js';
import {
  entryProbeOffset,
  functionByName,
  type GoFunction,
  goFunctions,
  readGoBuildInfo,
} from './gosym.js';

const EM_X86_64 = 62;

/** Whether podwire will put a path from the node into a probe: plain characters only. */
export const isProbeSafePath = (text: string): boolean => /^[\w./+-]+$/.test(text);

/**
 * The Go functions whose entry sees what we need, in Go's amd64 register ABI (Go 1.17+): the first integer
 * arguments in AX, BX, CX, DI, SI, R8, R9, a slice as pointer, length, capacity.
 * - send: `sendto(fd int, p []byte, flags int, to unsafe.Pointer, addrlen)`: fd=AX, bytes=BX, length=CX, to=R8.
 *   vishvananda/netlink sends through golang.org/x/sys/unix, the standard library's NetlinkRIB through syscall.
 * - receive: `syscall.ParseNetlinkMessage(b []byte)`: bytes=AX, length=BX, the answer exactly as received; both
 *   vishvananda/netlink and NetlinkRIB parse every answer with it.
 * - write: `syscall.write(fd int, p []byte)`: fd=AX, bytes=BX, length=CX; os.Stdout.Write ends there.
 */
export const pluginFunctions = {
  send: ['golang.org/x/sys/unix.sendto', 'syscall.sendto'],
  receive: ['syscall.ParseNetlinkMessage'],
  write: ['syscall.write', 'golang.org/x/sys/unix.write'],
} as const;

export type PluginHook = keyof typeof pluginFunctions;

export interface PluginInspection {
  path: string;
  /** Why this binary cannot be probed in its own code; null when it can. */
  unsupported: string | null;
  goVersion: string | null;
  /**
   * The probes, per hook, as the N of bpftrace's `uprobe:PATH:0xN` (see attachNumber): in a stripped binary the file
   * offset of the function's stack check's jump where it has one (see entryProbeOffset), else of its entry; in a
   * binary whose ELF symbols name the function, the entry's virtual address.
   */
  offsets: Record<PluginHook, number[]>;
}

const noOffsets = (): Record<PluginHook, number[]> => ({ send: [], receive: [], write: [] });

/** Go 1.17 brought the register ABI on amd64; older builds pass arguments on the stack. */
export function hasRegisterAbi(goVersion: string): boolean {
  const match = /^go(\d+)\.(\d+)/.exec(goVersion);
  if (!match) return false;
  const [major, minor] = [Number(match[1]), Number(match[2])];
  return major > 1 || (major === 1 && minor >= 17);
}

export function inspectPlugin(path: string): PluginInspection {
  const result: PluginInspection = {
    path,
    unsupported: null,
    goVersion: null,
    offsets: noOffsets(),
  };
  if (!isProbeSafePath(path)) {
    result.unsupported = 'its path has characters podwire will not put in a probe';
    return result;
  }
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (error) {
    result.unsupported = `cannot read it: ${(error as NodeJS.ErrnoException).code ?? error}`;
    return result;
  }
  const elf = parseElf(data);
  if (typeof elf === 'string') {
    result.unsupported = `not an ELF executable (${elf})`;
    return result;
  }
  if (elf.machine !== EM_X86_64) {
    result.unsupported = `built for ELF machine ${elf.machine}, podwire's plugin probes know x86-64 only`;
    return result;
  }
  const info = readGoBuildInfo(elf);
  if (typeof info === 'string') {
    result.unsupported = `not a Go program (${info})`;
    return result;
  }
  result.goVersion = info.goVersion;
  if (!hasRegisterAbi(info.goVersion)) {
    result.unsupported = `built with ${info.goVersion}, before Go's register ABI (1.17)`;
    return result;
  }
  const table = goFunctions(elf);
  if (typeof table === 'string') {
    result.unsupported = table;
    return result;
  }
  for (const hook of Object.keys(pluginFunctions) as PluginHook[]) {
    for (const name of pluginFunctions[hook]) {
      const fn = functionByName(table, name);
      if (!fn) continue;
      const offset = vaddrToFileOffset(elf, fn.entry);
      if (typeof offset !== 'number') continue;
      const at = attachNumber(elf, fn, offset);
      if (typeof at === 'string') {
        result.unsupported = at;
        result.offsets = noOffsets();
        return result;
      }
      result.offsets[hook].push(at);
    }
  }
  return result;
}

/**
 * What to write in `uprobe:PATH:0xN` for fn, or why nothing will do. bpftrace 0.17 reads N as a virtual address
 * when it lies inside one of the binary's sized ELF symbols, and then takes nothing but a symbol's start (it
 * cannot check other places without its disassembler); anywhere else it reads N as a file offset (with --unsafe),
 * as in Debian's stripped plugins. A plugin built without -s keeps a symbol table, and a big one (tens of MB)
 * has functions whose file offsets, read as addresses, fall inside other functions: those offsets would make
 * bpftrace refuse the whole program.
 */
export function attachNumber(elf: ElfImage, fn: GoFunction, offset: number): number | string {
  if (insideSizedSymbol(elf, fn.entry)) {
    // Named in the symbols: the entry's address (the jump after it would be refused, so the entry is single-stepped).
    if (findSymbol(elf, fn.name)?.value === fn.entry) return fn.entry;
    return `${fn.name} at 0x${fn.entry.toString(16)} is inside another ELF symbol, where bpftrace takes no uprobe`;
  }
  const at = entryProbeOffset(elf.data, offset);
  if (insideSizedSymbol(elf, at))
    return `the file offset of ${fn.name} (0x${at.toString(16)}) is also an address inside one of its ELF symbols, which bpftrace would read it as`;
  return at;
}

export interface PluginSurvey {
  plugins: PluginInspection[];
  /**
   * `uprobes` when every plugin can be probed in its own code; `syscalls` (probes on the system-wide syscall
   * tracepoints, which cost every process on the node) when one cannot, so that its traffic is not lost.
   */
  mode: 'uprobes' | 'syscalls';
  /** The plugins that forced `syscalls`, as "path: why". */
  reasons: string[];
  /**
   * The plugin types the node's CNI configs name, when only those are probed (null: every plugin in the dirs); see
   * choosePlugins in cni-config.ts.
   */
  types: string[] | null;
  /** Why every plugin is probed rather than the ones the configs name (null when only those are). */
  allBecause: string | null;
  /**
   * The choice, then path, inode, size and mtime of every plugin probed: changes when a plugin is installed,
   * replaced or removed, or when the configs name other types.
   */
  fingerprint: string;
}

/** Regular executable files in a directory: what a runtime can exec as a plugin. Throws when it cannot be read. */
export function pluginFilesIn(dir: string): string[] {
  return readdirSync(dir)
    .map((name) => join(dir, name))
    .filter((path) => {
      try {
        const stat = statSync(path);
        return stat.isFile() && (stat.mode & 0o111) !== 0;
      } catch {
        return false;
      }
    })
    .sort();
}

/** pluginFilesIn, none for a directory that is not there (yet). */
export function pluginFiles(dir: string): string[] {
  try {
    return pluginFilesIn(dir);
  } catch {
    return [];
  }
}

/** A file as the kernel's uprobes see it: the same path may become another file (an install, an upgrade). */
export function fileIdentity(path: string): string {
  try {
    const stat = statSync(path);
    return `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeMs}`;
  } catch {
    return 'gone';
  }
}

const fingerprintOf = (files: string[], chosen: Chosen) =>
  [JSON.stringify(chosen), ...files.map((path) => `${path}:${fileIdentity(path)}`)].join('\n');

interface Chosen {
  files: string[];
  types: string[] | null;
  allBecause: string | null;
}

/**
 * The plugin files to probe: those the choice names, by file name, in every dir (a superset of the one the runtime
 * finds first); every plugin when there is no choice, when it says why not, or when it names a type not found.
 */
function chosenFiles(dirs: string[], choice: PluginChoice | undefined): Chosen {
  const files = dirs.flatMap(pluginFiles);
  if (!choice) return { files, types: null, allBecause: null };
  if ('all' in choice) return { files, types: null, allBecause: choice.all };
  const missing = choice.types.filter((type) => !files.some((file) => basename(file) === type));
  if (missing.length > 0)
    return {
      files,
      types: null,
      allBecause: `the CNI configs name ${missing.join(', ')}, not found in the CNI bin dirs podwire watches`,
    };
  return {
    files: files.filter((file) => choice.types.includes(basename(file))),
    types: choice.types,
    allBecause: null,
  };
}

/** Cheap: stats only (and the choice, read from small files). Compared every few seconds to see plugins come and go. */
export function pluginFingerprint(dirs: string[], choice?: PluginChoice): string {
  const chosen = chosenFiles(dirs, choice);
  return fingerprintOf(chosen.files, chosen);
}

/**
 * Inspects the plugins to probe: every executable in `dirs`, or only those of the types `choice` names (what the
 * node's CNI configs can run, cni-config.ts).
 */
export function surveyPlugins(
  dirs: string[],
  forceSyscalls = false,
  choice?: PluginChoice,
): PluginSurvey {
  const chosen = chosenFiles(dirs, choice);
  const { files, types, allBecause } = chosen;
  const fingerprint = fingerprintOf(files, chosen);
  const plugins = files.map(inspectPlugin);
  const reasons = plugins
    .filter((plugin) => plugin.unsupported !== null)
    .map((plugin) => `${plugin.path}: ${plugin.unsupported}`);
  if (forceSyscalls) reasons.unshift('asked for (--plugin-probes syscalls)');
  return {
    plugins,
    mode: reasons.length > 0 ? 'syscalls' : 'uprobes',
    reasons,
    types,
    allBecause,
    fingerprint,
  };
}
