// Finds where to put uprobes on a containerd binary for its CRI calls, and how to read their requests and replies.
//
// Everything is read from the binary itself (build info, .gopclntab, ELF symbols when present, objdump for
// RETs): no debug symbols needed, nothing executed, nothing attached.

import { readFile } from 'node:fs/promises';
import {
  type ElfImage,
  findSymbol,
  loadSegments,
  PF_W,
  PF_X,
  parseElf,
  readAt,
  segmentBytes,
  vaddrToFileOffset,
} from './elf.js';
import {
  disassemble,
  entryProbeOffset,
  type GoBuildInfo,
  type GoFunction,
  type GoFunctionTable,
  goFunctions,
  moduleVersion,
  readGoBuildInfo,
  returnSites,
} from './gosym.js';

export type CriMethod =
  | 'RunPodSandbox'
  | 'StopPodSandbox'
  | 'RemovePodSandbox'
  | 'CreateContainer'
  | 'StartContainer';

export const CRI_METHODS: readonly CriMethod[] = [
  'RunPodSandbox',
  'StopPodSandbox',
  'RemovePodSandbox',
  'CreateContainer',
  'StartContainer',
];

/**
 * `criService`: containerd's implementation, `(*criService).M(ctx, r) (*Resp, error)`.
 * `grpcHandler`: cri-api's generated `_RuntimeService_M_Handler(srv, ctx, dec, interceptor) (interface{}, error)`,
 * present in every version but decoding the request itself, so the request is not visible at its entry.
 */
export type CriSymbolKind = 'criService' | 'grpcHandler';

export interface CriProbePoint {
  method: CriMethod;
  /** The Go function chosen, e.g. github.com/containerd/containerd/pkg/cri/server.(*criService).RunPodSandbox */
  symbol: string;
  kind: CriSymbolKind;
  /**
   * File offset of the entry probe (what uprobe_events and perf_event_open take): the function's first instruction,
   * or the jump of its stack check a few bytes on, which the kernel emulates instead of single-stepping
   * (see entryProbeOffset).
   */
  entryOffset: number;
  /** File offsets of every RET (a plain uprobe on each replaces a uretprobe, which Go must never get). */
  returnOffsets: number[];
  /**
   * Virtual addresses of the same instructions. bpftrace's `uprobe:BIN:0xADDR` resolves ADDR as a virtual address
   * through the binary's ELF symbols (Debian's containerd exports them in .dynsym); on a binary without ELF symbols
   * it refuses the address unless run with --unsafe, and then uses it as a file offset.
   */
  entryAddress: number;
  returnAddresses: number[];
}

export interface RuntimeInspection {
  binary: string;
  runtime: 'containerd';
  version: string | null;
  goVersion: string | null;
  criApiVersion: string | null;
  /**
   * Byte shift of every CRI message field: 0 for gogo protobuf (cri-api < v0.34), 8 for protoimpl.MessageState
   * (>= v0.34).
   */
  messageShift: 0 | 8;
  /** In CRI_METHODS order; a method has two when the binary has two CRI servers (containerd 1.7). */
  points: CriProbePoint[];
  /** Methods that could not be resolved, each with why. */
  missing: { method: CriMethod; reason: string }[];
  /** How version and messageShift were found, and anything a user should know about the choice of symbols. */
  notes: string[];
}

/** Go's amd64 register ABI names, as bpftrace's reg() spells them. */
export type GoRegister = 'ax' | 'bx' | 'cx' | 'di' | 'si' | 'r8' | 'r9' | 'r10' | 'r11';

export interface GoFieldPath {
  /**
   * Byte offsets from the base pointer: every one but the last is a pointer field to follow, the last is the field.
   * [0, 0, 16] reads base->Config->Metadata.Uid. The message shift is already added to each.
   */
  offsets: number[];
  /** A Go string is (data pointer, length) at the field's offset and offset + 8. */
  kind: 'string' | 'uint32';
}

export interface CriCallLayout {
  method: CriMethod;
  kind: CriSymbolKind;
  /** Register holding the request pointer at the function's entry; null when the request is not an argument. */
  requestRegister: GoRegister | null;
  requestFields: Record<string, GoFieldPath>;
  /** Register holding the response pointer at a RET. */
  responseRegister: GoRegister;
  responseFields: Record<string, GoFieldPath>;
  /** Register holding the error's type word at a RET: non-zero when the call failed. */
  errorRegister: GoRegister;
}

/**
 * Where the request and response fields are, as cri-api's generated pkg/apis/runtime/v1/api.pb.go lays them out:
 *  - gogo (Kubernetes 1.26 tree, i.e. cri-api v0.26, the generator v0.25 also used; and a later gogo-era fork):
 *    fields in proto order, XXX_NoUnkeyedLiteral and XXX_sizecache last. RunPodSandboxRequest{Config
 *    *PodSandboxConfig, RuntimeHandler}, PodSandboxConfig{Metadata *PodSandboxMetadata, Hostname, ...},
 *    PodSandboxMetadata{Name, Uid, Namespace string, Attempt uint32}, RunPodSandboxResponse{PodSandboxId},
 *    StopPodSandboxRequest{PodSandboxId}, RemovePodSandboxRequest{PodSandboxId}, CreateContainerRequest{PodSandboxId,
 *    Config, SandboxConfig}, CreateContainerResponse{ContainerId}, StartContainerRequest{ContainerId}; the
 *    Stop/Remove/Start responses are empty.
 *  - protoc-gen-go v1.36.4 (current Kubernetes, cri-api v0.34+): `state protoimpl.MessageState` first, then the
 *    same fields, then unknownFields and sizeCache last; MessageState holds one pointer, so fields move by 8 bytes.
 *  - containerd 1.6.20's own getters, disassembled: (*RunPodSandboxRequest).GetConfig loads from 0(%rax),
 *    (*PodSandboxMetadata).GetUid from 0x10, GetAttempt from 0x30 (test/binaries/runtime.test.ts checks them all).
 * Registers follow Go's ABI: `(*criService).M(ctx, r)` has the receiver in RAX, ctx in RBX+RCX, r in RDI, and
 * returns (*Resp, error) in RAX and RBX+RCX. The gRPC handler returns (interface{}, error): the response pointer
 * is the interface's data word in RBX, the error's type word is in RCX.
 */
export function criCallLayout(
  method: CriMethod,
  shift: 0 | 8,
  kind: CriSymbolKind = 'criService',
): CriCallLayout {
  const s = shift;
  const string = (...offsets: number[]): GoFieldPath => ({ offsets, kind: 'string' });
  let requestFields: Record<string, GoFieldPath>;
  let responseFields: Record<string, GoFieldPath> = {};
  switch (method) {
    case 'RunPodSandbox':
      requestFields = {
        podName: string(s, s, s + 0),
        podUid: string(s, s, s + 16),
        podNamespace: string(s, s, s + 32),
        attempt: { offsets: [s, s, s + 48], kind: 'uint32' },
      };
      responseFields = { podSandboxId: string(s) };
      break;
    case 'StopPodSandbox':
    case 'RemovePodSandbox':
      requestFields = { podSandboxId: string(s) };
      break;
    case 'CreateContainer':
      requestFields = { podSandboxId: string(s) };
      responseFields = { containerId: string(s) };
      break;
    case 'StartContainer':
      requestFields = { containerId: string(s) };
      break;
  }
  if (kind === 'grpcHandler') {
    return {
      method,
      kind,
      requestRegister: null,
      requestFields: {},
      responseRegister: 'bx',
      responseFields,
      errorRegister: 'cx',
    };
  }
  return {
    method,
    kind,
    requestRegister: 'di',
    requestFields,
    responseRegister: 'ax',
    responseFields,
    errorRegister: 'bx',
  };
}

/**
 * Packages that define containerd's (*criService), newest first. The packages of one entry are built into the same
 * binary, and the daemon's environment chooses which of them serves CRI: each is probed, and only the serving one
 * fires.
 */
const IMPLEMENTATION_PACKAGES: readonly (readonly string[])[] = [
  ['github.com/containerd/containerd/v2/internal/cri/server'], // 2.0 and later
  ['github.com/containerd/containerd/v2/pkg/cri/server'], // 2.0 pre-releases
  [
    'github.com/containerd/containerd/pkg/cri/server', // 1.6, 1.7
    'github.com/containerd/containerd/pkg/cri/sbserver', // 1.7, serving instead when ENABLE_CRI_SANDBOXES is set
  ],
];
const SBSERVER = 'github.com/containerd/containerd/pkg/cri/sbserver';
const CRI_API_V1 = 'k8s.io/cri-api/pkg/apis/runtime/v1.';

/** Name of a cri-api v1 function, also when vendored into a GOPATH build (`.../vendor/k8s.io/cri-api/...`). */
function isCriApiName(name: string, member: string): boolean {
  const full = CRI_API_V1 + member;
  return name === full || (name.endsWith(`/vendor/${full}`) && name.length > full.length);
}

interface CriSymbols {
  implementations: Map<string, GoFunction>;
  handlers: Map<CriMethod, GoFunction>;
  api: Map<string, GoFunction>;
}

/** One pass over the function table for every name this module cares about. */
function collectCriSymbols(table: GoFunctionTable): CriSymbols {
  const implementations = new Map<string, GoFunction>();
  const handlers = new Map<CriMethod, GoFunction>();
  const api = new Map<string, GoFunction>();
  const wantedApi = [
    '(*PodSandboxMetadata).GetUid',
    '(*RunPodSandboxRequest).ProtoReflect',
    '(*RunPodSandboxRequest).XXX_Unmarshal',
  ];
  for (const fn of table.functions) {
    if (fn.name.includes('(*criService).')) {
      implementations.set(fn.name, fn);
    } else if (fn.name.includes(CRI_API_V1)) {
      for (const method of CRI_METHODS) {
        if (isCriApiName(fn.name, `_RuntimeService_${method}_Handler`)) handlers.set(method, fn);
      }
      for (const member of wantedApi) if (isCriApiName(fn.name, member)) api.set(member, fn);
    }
  }
  return { implementations, handlers, api };
}

function chooseFunctions(
  method: CriMethod,
  symbols: CriSymbols,
): { fn: GoFunction; kind: CriSymbolKind }[] {
  for (const packages of IMPLEMENTATION_PACKAGES) {
    const found = packages.flatMap((pkg) => {
      const fn = symbols.implementations.get(`${pkg}.(*criService).${method}`);
      return fn ? [{ fn, kind: 'criService' as const }] : [];
    });
    if (found.length > 0) return found;
  }
  const handler = symbols.handlers.get(method);
  return handler ? [{ fn: handler, kind: 'grpcHandler' }] : [];
}

function readGoStringAt(elf: ElfImage, headerAddr: number): string | null {
  const header = readAt(elf, headerAddr, 16);
  if (typeof header === 'string') return null;
  const ptr = Number(header.readBigUInt64LE(0));
  const len = Number(header.readBigUInt64LE(8));
  if (len === 0 || len > 256) return null;
  const bytes = readAt(elf, ptr, len);
  return typeof bytes === 'string' ? null : bytes.toString('utf8');
}

/**
 * containerd's `version.Version`: from its ELF symbol; else the build info's main module version; else the source
 * default ("X.Y.Z+unknown") when a string header in the data segment points at it, i.e. the build did not stamp one.
 */
function findVersion(elf: ElfImage, info: GoBuildInfo | null, notes: string[]): string | null {
  for (const name of [
    'github.com/containerd/containerd/v2/version.Version',
    'github.com/containerd/containerd/version.Version',
  ]) {
    const symbol = findSymbol(elf, name);
    const value = symbol ? readGoStringAt(elf, symbol.value) : null;
    if (value) {
      notes.push(`version from the ELF symbol ${name}`);
      return value;
    }
  }
  const main = info?.main;
  if (main?.version && main.version !== '(devel)') {
    notes.push(`version from the build info's main module ${main.path}`);
    return main.version;
  }
  const unstamped = unstampedVersion(elf);
  if (unstamped) {
    notes.push('version is the source default (the build did not stamp version.Version)');
    return unstamped;
  }
  notes.push('version unknown: no version.Version symbol, no module version in the build info');
  return null;
}

function unstampedVersion(elf: ElfImage): string | null {
  const marker = Buffer.from('+unknown');
  const writable = loadSegments(elf)
    .filter((s) => (s.flags & (PF_W | PF_X)) === PF_W)
    .map((s) => segmentBytes(elf, s));
  for (const segment of loadSegments(elf)) {
    if ((segment.flags & (PF_W | PF_X)) !== 0) continue;
    const bytes = segmentBytes(elf, segment);
    for (let at = bytes.indexOf(marker); at >= 0; at = bytes.indexOf(marker, at + 1)) {
      const end = at + marker.length;
      // The string is glued to its neighbours: try each start whose text looks like a version, and keep the one
      // a Go string header (pointer, length) in the data refers to.
      for (let start = Math.max(0, at - 40); start < at; start++) {
        const text = bytes.toString('latin1', start, end);
        if (!/^\d+\.\d+\.\d+[0-9A-Za-z.~-]*\+unknown$/.test(text)) continue;
        const header = Buffer.alloc(16);
        header.writeBigUInt64LE(BigInt(segment.vaddr + start), 0);
        header.writeBigUInt64LE(BigInt(end - start), 8);
        if (writable.some((data) => data.indexOf(header) >= 0)) return text;
      }
    }
  }
  return null;
}

function semverMinor(version: string): { major: number; minor: number } | null {
  const match = /^v?(\d+)\.(\d+)/.exec(version);
  return match ? { major: Number(match[1]), minor: Number(match[2]) } : null;
}

/**
 * The field shift, measured where possible: cri-api's (*PodSandboxMetadata).GetUid loads Uid, the second string
 * field, from 16 + shift. Falls back to the cri-api version in the build info, then to which protobuf runtime
 * the message types implement.
 */
async function findMessageShift(
  binaryPath: string,
  symbols: CriSymbols,
  criApiVersion: string | null,
  notes: string[],
): Promise<0 | 8> {
  let fromVersion: 0 | 8 | null = null;
  const parsed = criApiVersion ? semverMinor(criApiVersion) : null;
  if (parsed) fromVersion = parsed.major > 0 || parsed.minor >= 34 ? 8 : 0;

  const getter = symbols.api.get('(*PodSandboxMetadata).GetUid');
  if (getter) {
    const lines = await disassemble(binaryPath, getter);
    if (Array.isArray(lines)) {
      for (const line of lines) {
        const match = /^mov\s+0x([0-9a-f]+)\(%rax\),/.exec(line.text);
        if (!match?.[1]) continue;
        const shift = Number.parseInt(match[1], 16) - 16;
        if (shift === 0 || shift === 8) {
          notes.push(
            `messageShift ${shift} measured: ${getter.name} loads Uid from offset ${16 + shift}`,
          );
          if (fromVersion !== null && fromVersion !== shift) {
            notes.push(
              `cri-api ${criApiVersion} would suggest messageShift ${fromVersion}; the measurement wins`,
            );
          }
          return shift;
        }
        break;
      }
    }
  }
  if (fromVersion !== null) {
    notes.push(`messageShift ${fromVersion} from cri-api ${criApiVersion}`);
    return fromVersion;
  }
  if (symbols.api.has('(*RunPodSandboxRequest).XXX_Unmarshal')) {
    notes.push('messageShift 0: cri-api messages are gogo protobuf (XXX_Unmarshal methods)');
    return 0;
  }
  if (symbols.api.has('(*RunPodSandboxRequest).ProtoReflect')) {
    notes.push(
      'messageShift 8: cri-api messages embed protoimpl.MessageState (ProtoReflect methods)',
    );
    return 8;
  }
  notes.push(
    'messageShift unknown, assuming 0 (gogo protobuf): no getter, cri-api version or message methods found',
  );
  return 0;
}

async function probePoint(
  binaryPath: string,
  elf: ElfImage,
  method: CriMethod,
  fn: GoFunction,
  kind: CriSymbolKind,
): Promise<CriProbePoint | { error: string } | { missing: string }> {
  const entry = vaddrToFileOffset(elf, fn.entry);
  if (typeof entry === 'string') return { missing: `${fn.name}: ${entry}` };
  const entryOffset = entryProbeOffset(elf.data, entry);
  const sites = await returnSites(binaryPath, fn, elf);
  if (!Array.isArray(sites)) return sites;
  if (sites.length === 0) return { missing: `${fn.name} has no RET instruction` };
  return {
    method,
    symbol: fn.name,
    kind,
    entryOffset,
    returnOffsets: sites.map((site) => site.offset),
    entryAddress: fn.entry + (entryOffset - entry),
    returnAddresses: sites.map((site) => site.address),
  };
}

/** Entry and return probe points for containerd's CRI calls, with what is needed to decode them. */
export async function inspectContainerd(
  binaryPath: string,
): Promise<RuntimeInspection | { error: string }> {
  let data: Buffer;
  try {
    data = await readFile(binaryPath);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? String(err);
    return {
      error: `cannot read ${binaryPath} (${why}): pass the path of the containerd daemon binary`,
    };
  }
  const elf = parseElf(data);
  if (typeof elf === 'string') {
    return { error: `${binaryPath}: ${elf}: pass the path of the containerd daemon binary` };
  }
  const table = goFunctions(elf);
  if (typeof table === 'string') {
    return {
      error: `${binaryPath}: ${table} (.gopclntab): pass the path of the containerd daemon binary`,
    };
  }
  const symbols = collectCriSymbols(table);
  const chosen = CRI_METHODS.map((method) => ({
    method,
    choices: chooseFunctions(method, symbols),
  }));
  if (chosen.every((c) => c.choices.length === 0)) {
    return {
      error: `${binaryPath} is a Go binary without CRI handlers ((*criService).RunPodSandbox or _RuntimeService_*_Handler): point podwire at containerd built with its CRI plugin`,
    };
  }

  const notes: string[] = [];
  const buildInfo = readGoBuildInfo(elf);
  const info = typeof buildInfo === 'string' ? null : buildInfo;
  if (!info) notes.push(`no Go build info: ${buildInfo}`);
  else if (!info.main) {
    notes.push(
      `build info has no module list (GOPATH build of ${info.path ?? 'an unknown package'})`,
    );
  }
  const criApiVersion = info ? moduleVersion(info, 'k8s.io/cri-api') : null;
  const version = findVersion(elf, info, notes);
  const messageShift = await findMessageShift(binaryPath, symbols, criApiVersion, notes);

  const points: CriProbePoint[] = [];
  const missing: RuntimeInspection['missing'] = [];
  const results = await Promise.all(
    chosen.map(async ({ method, choices }) => ({
      method,
      results: await Promise.all(
        choices.map((choice) => probePoint(binaryPath, elf, method, choice.fn, choice.kind)),
      ),
    })),
  );
  for (const { method, results: found } of results) {
    if (found.length === 0) {
      missing.push({
        method,
        reason: `neither (*criService).${method} nor _RuntimeService_${method}_Handler is in the function table`,
      });
    }
    for (const result of found) {
      if ('error' in result) return result;
      if ('missing' in result) missing.push({ method, reason: result.missing });
      else points.push(result);
    }
  }
  const unsymbolized = points.filter((p) => !findSymbol(elf, p.symbol));
  if (unsymbolized.length > 0) {
    notes.push(
      'no ELF symbols for the chosen functions: bpftrace resolves uprobe:BIN:0xADDR through ELF symbols, so it needs --unsafe here and then reads the number as a file offset (use entryOffset/returnOffsets)',
    );
  }
  if (points.some((p) => p.kind === 'grpcHandler')) {
    notes.push(
      'some methods fall back to the gRPC handler: their request fields are not readable at entry',
    );
  }
  if (points.some((p) => p.symbol.startsWith(`${SBSERVER}.`))) {
    notes.push(
      'containerd 1.7 carries two CRI servers, pkg/cri/server and pkg/cri/sbserver (which serves instead when containerd runs with ENABLE_CRI_SANDBOXES set): both are probed, only the serving one fires',
    );
  }

  return {
    binary: binaryPath,
    runtime: 'containerd',
    version,
    goVersion: info?.goVersion ?? null,
    criApiVersion,
    messageShift,
    points,
    missing,
    notes,
  };
}
