// Replay throughput: a 10,000-pod recording, synthesised from a real one, through the Pipeline; events/s and peak RSS.
//
// The synthetic recording repeats a real one (FIXTURE, ten-pods-envs.ndjson by default; an older one is read in
// today's format, as podwire reads it) COPIES times. Where each line keeps its pids, netns inodes, goroutines and
// chunks is its declaration's (src/decode/probe-lines.ts). Every copy gets ids of its own (sandbox ids, pod
// uids, pod names, netns paths, veth names: same length, so bpftrace's chunks keep their boundaries), pids, tids,
// goroutines and pod netns inodes shifted out of the way of the other copies, and timestamps shifted so that each
// copy starts before the previous one ends (OVERLAP of the window), as on a busy node. Every record it gives is
// mapped back to the original's and must equal it: that checks the synthesis and the pipeline's determinism
// under interleaving. Each run is a process of its own, so that its peak RSS is its own.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Pipeline } from '../src/correlate/pipeline.js';
import type { HandshakeRecord } from '../src/correlate/record.js';
import { bytesOfWords } from '../src/decode/lines.js';
import {
  type Field,
  type ProbeTag,
  probeLineSpec,
  probeLines,
  stringChunk,
  wordsText,
} from '../src/decode/probe-lines.js';
import type { RecordedLine, RecordingHeader } from '../src/recording/format.js';
import { readRecordingFile } from '../src/recording/reader.js';
import { pipelineFor, replayLine } from '../src/recording/replay.js';
import { rfc3339Nanos } from '../src/time.js';
import { median } from './median.js';
import { projectRoot } from './podwire-trace.js';

const copies = Number(process.env.COPIES ?? 1000);
const overlap = Number(process.env.OVERLAP ?? 0.1);
const runs = Number(process.env.RUNS ?? 5);
const regenerate = process.env.REGENERATE === '1';
const profile = process.env.PROFILE === '1';
const targetEventsPerSecond = 200_000;
const targetPeakRssMb = 200;
/** Bumped whenever the synthesis changes, so that a cached file made by an older one is made again. */
const synthesisVersion = 2;

const root = projectRoot();
/** The real recording to repeat: the default probes' (plugins seen in their own code); FIXTURE names another. */
const fixtureName = process.env.FIXTURE ?? 'ten-pods-envs.ndjson';
const fixture = join(root, 'test/fixtures/recordings', fixtureName);
const cacheDir = join(root, '.cache/bench');

// ---- The recording as the synthesis sees it -------------------------------------------------------------------

/** Where a chunked line keeps its chunk, from its declaration (src/decode/probe-lines.ts). */
interface Chunking {
  /** Which field holds the chunk number, and from which field on the line is chunk text. */
  chunkField: number;
  textField: number;
  /** Extra key fields beyond source and tid (cni_env: the variable's index). */
  keyFields: number[];
  /** str: string chunks (a chunk shorter than stringChunk ends the string); words: a buffer in words. */
  format: 'str' | 'words';
}

/** What the synthesis needs of a tag's declaration: its chunking, and which fields hold what, by position. */
interface TagPlan {
  chunking: Chunking | null;
  /** Fields printed as words (a repeated last field counts for every field from there on). */
  words: (field: number) => boolean;
  pids: number[];
  inums: number[];
  hostInums: number[];
  goroutines: number[];
}

function tagPlan(tag: string): TagPlan | null {
  const spec = probeLineSpec(tag);
  if (!spec) return null;
  const index = (name: string) => spec.fields.findIndex((field) => field.name === name);
  const holding = (what: Field['holds']) =>
    spec.fields.flatMap((field, i) => (field.holds === what ? [i] : []));
  const last = spec.fields.at(-1);
  const chunks = spec.chunks;
  return {
    chunking: chunks
      ? {
          chunkField: index(chunks.number),
          textField: spec.fields.length - 1,
          keyFields: chunks.key.map(index),
          format: chunks.join === 'string' ? 'str' : 'words',
        }
      : null,
    words: (field) => (spec.fields[field] ?? (last?.repeats ? last : undefined))?.type === 'words',
    pids: holding('pid'),
    inums: [...holding('netns'), ...holding('host netns')],
    hostInums: holding('host netns'),
    goroutines: holding('goroutine'),
  };
}

/** The line that says how far a source has been read (tick.bt; the CRI reader's trace_marker). */
const tickTag: ProbeTag = 'tick';
const criArgName = probeLines.cri_arg.fields.findIndex((field) => field.name === 'name');
const criArgValue = probeLines.cri_arg.fields.findIndex((field) => field.name === 'value');

const tagPlans = new Map<string, TagPlan | null>();
function planOf(tag: string): TagPlan | null {
  if (!tagPlans.has(tag)) tagPlans.set(tag, tagPlan(tag));
  return tagPlans.get(tag) ?? null;
}

interface PlanLine {
  src: string;
  /** raw = rawPrefix + JSON of the printf data + rawSuffix: keeps bpftrace's own spacing. */
  rawPrefix: string;
  rawSuffix: string;
  tag: string;
  ns: bigint;
  pid: number;
  tid: number;
  /** The fields after tid; a words field as its bytes, latin1. */
  fields: string[];
  group: number | null;
  /** Position of this line's chunk in its group. */
  chunkIndex: number;
  hasToken: boolean;
}

interface Group {
  format: Chunking['format'];
  lines: number[];
  /** Chunk texts; for words, the bytes as latin1 characters. */
  texts: string[];
  hasToken: boolean;
}

type TokenClass = 'hex64' | 'uuid' | 'veth' | 'name';

/** Everything a copy needs: read once from the real recording, the same in the parent and in every run. */
interface Plan {
  header: RecordingHeader;
  /** Lines before the first probe line (probe up/down, attached_probes): kept once, at the top. */
  preamble: string[];
  lines: PlanLine[];
  groups: Group[];
  tokens: { text: string; cls: TokenClass; index: number }[];
  tokenPattern: RegExp;
  names: number;
  firstNs: bigint;
  windowNs: bigint;
  pidStride: number;
  podInums: Set<number>;
  inumStride: number;
  goroutineStride: number;
  /** For each line, the earliest ns of the lines from it on (ticks left out). */
  restNs: bigint[];
}

const hex64 = /(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])/g;
const uuid =
  /(?<![0-9a-f])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-f])/g;
const veth = /veth[0-9a-f]{8}/g;

/** A words field's bytes as latin1 characters, where ids can be found and replaced; and back. */
const wordsToLatin1 = (text: string) => Buffer.from(bytesOfWords([text], -1)).toString('latin1');
const latin1ToWords = (bytes: string) => wordsText(Buffer.from(bytes, 'latin1'));

/** Runs of chunks that continue each other: buffers are contiguous; a string ends at its first short chunk. */
function runsOf(group: Group): number[][] {
  if (group.format !== 'str') return [group.texts.map((_, i) => i)];
  const runs: number[][] = [];
  let run: number[] = [];
  group.texts.forEach((text, i) => {
    run.push(i);
    if (text.length < stringChunk) {
      runs.push(run);
      run = [];
    }
  });
  if (run.length > 0) runs.push(run);
  return runs;
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function roundUp(value: number, step: number): number {
  return Math.ceil(value / step) * step;
}

function buildPlan(file: string): Plan {
  // Read as podwire reads it: an older recording comes in today's format.
  const recording = readRecordingFile(file);
  const header = recording.header;
  const preamble: string[] = [];
  const lines: PlanLine[] = [];
  const groups: Group[] = [];
  const open = new Map<string, number>();
  for (const wrapper of recording.lines) {
    // The live run's idle drains: copies overlap, so there is no idle moment to repeat; the window releases.
    if ('drain' in wrapper) continue;
    const raw = 'raw' in wrapper ? wrapper.raw : undefined;
    const parsed = raw?.startsWith('{')
      ? (JSON.parse(raw) as { type?: string; data?: unknown })
      : null;
    if (!('src' in wrapper) || raw === undefined || parsed?.type !== 'printf') {
      // A raw line that is no printf gives nothing but a problem (ten-pods-envs.ndjson has two): not repeated.
      if (raw !== undefined && lines.length > 0) continue;
      if (lines.length > 0)
        throw new Error(
          `a non-probe line after the first probe line cannot be repeated: ${JSON.stringify(wrapper)}`,
        );
      preamble.push(JSON.stringify(wrapper));
      continue;
    }
    const data = parsed.data as string;
    const encoded = JSON.stringify(data);
    const at = raw.indexOf(encoded);
    if (at < 0 || !data.endsWith('\n')) throw new Error(`unexpected printf line: ${raw}`);
    const [tag = '', ns = '', pid = '', tid = '', ...fields] = data.slice(0, -1).split('\t');
    const tagged = planOf(tag);
    if (!tagged) throw new Error(`${tag} lines are not declared in src/decode/probe-lines.ts`);
    const line: PlanLine = {
      src: wrapper.src,
      rawPrefix: raw.slice(0, at),
      rawSuffix: raw.slice(at + encoded.length),
      tag,
      ns: BigInt(ns),
      pid: Number(pid),
      tid: Number(tid),
      fields: fields.map((field, i) =>
        i < (tagged.chunking?.textField ?? fields.length) && tagged.words(i)
          ? wordsToLatin1(field)
          : field,
      ),
      group: null,
      chunkIndex: 0,
      hasToken: false,
    };
    const chunks = tagged.chunking;
    if (chunks) {
      const key = [wrapper.src, tag, tid, ...chunks.keyFields.map((f) => fields[f])].join('\0');
      const chunk = Number(fields[chunks.chunkField]);
      const body = fields.slice(chunks.textField).join('\t');
      let group = chunk === 0 ? undefined : open.get(key);
      if (group === undefined) {
        group = groups.length;
        groups.push({ format: chunks.format, lines: [], texts: [], hasToken: false });
        open.set(key, group);
      }
      const entry = groups[group] as Group;
      line.group = group;
      line.chunkIndex = entry.lines.length;
      entry.lines.push(lines.length);
      entry.texts.push(chunks.format === 'words' ? wordsToLatin1(body) : body);
    }
    lines.push(line);
  }
  if (lines.length === 0) throw new Error(`${file} has no probe lines`);

  // Tokens: every id-shaped string, and the pod names the CRI calls and the CNI_ARGS carry.
  const found = new Map<string, TokenClass>();
  const names = new Set<string>();
  const scan = (text: string) => {
    for (const m of text.matchAll(hex64)) found.set(m[0], 'hex64');
    for (const m of text.matchAll(uuid)) found.set(m[0], 'uuid');
    for (const m of text.matchAll(veth)) found.set(m[0], 'veth');
    for (const m of text.matchAll(/K8S_POD_NAME=([^;\s\\\0]+)/g)) if (m[1]) names.add(m[1]);
  };
  for (const line of lines) {
    // The CRI argument "name" is the pod's name.
    if (line.tag === 'cri_arg' && line.fields[criArgName] === 'name' && line.fields[criArgValue])
      names.add(line.fields[criArgValue]);
    if (line.group === null) scan(line.fields.join('\t'));
  }
  for (const group of groups)
    for (const run of runsOf(group)) scan(run.map((i) => group.texts[i]).join(''));
  for (const name of names) {
    if (name.length < 7) throw new Error(`pod name "${name}" is too short to number 10,000 copies`);
    found.set(name, 'name');
  }
  const counters: Record<TokenClass, number> = { hex64: 0, uuid: 0, veth: 0, name: 0 };
  const tokens = [...found].map(([text, cls]) => ({ text, cls, index: counters[cls]++ }));
  const tokenPattern = new RegExp(
    [...found.keys()]
      .sort((a, b) => b.length - a.length)
      .map(escapeRegExp)
      .join('|'),
    'g',
  );
  const hasToken = (text: string) => {
    tokenPattern.lastIndex = 0;
    return tokenPattern.test(text);
  };
  for (const line of lines)
    if (line.group === null) line.hasToken = hasToken(line.fields.join('\t'));
  for (const group of groups)
    group.hasToken = runsOf(group).some((run) => hasToken(run.map((i) => group.texts[i]).join('')));

  // Strides: a copy's pids, pod netns inodes and goroutines sit above every value of the copy before it.
  let firstNs = lines[0]?.ns ?? 0n;
  let lastNs = firstNs;
  let minPid = Number.POSITIVE_INFINITY;
  let maxPid = 0;
  const inums = new Set<number>();
  const hostInums = new Set<number>();
  let minG = Number.POSITIVE_INFINITY;
  let maxG = 0;
  for (const line of lines) {
    if (line.ns < firstNs) firstNs = line.ns;
    if (line.ns > lastNs) lastNs = line.ns;
    const tagged = planOf(line.tag) as TagPlan;
    const pids = [line.pid, line.tid, ...tagged.pids.map((f) => Number(line.fields[f]))];
    for (const pid of pids.filter((pid) => pid > 0)) {
      minPid = Math.min(minPid, pid);
      maxPid = Math.max(maxPid, pid);
    }
    for (const f of tagged.inums) inums.add(Number(line.fields[f]));
    // The node's own namespaces are shared by every copy.
    for (const f of tagged.hostInums) hostInums.add(Number(line.fields[f]));
    for (const f of tagged.goroutines) {
      const g = Number.parseInt(line.fields[f] ?? '', 16);
      minG = Math.min(minG, g);
      maxG = Math.max(maxG, g);
    }
  }
  const restNs: bigint[] = Array(lines.length + 1);
  restNs[lines.length] = lastNs + 1n;
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i] as PlanLine;
    const later = restNs[i + 1] as bigint;
    restNs[i] = line.tag !== tickTag && line.ns < later ? line.ns : later;
  }
  const podInums = new Set([...inums].filter((inum) => !hostInums.has(inum)));
  const inumValues = [...podInums];
  const inumStride = roundUp(Math.max(...inumValues) - Math.min(...inumValues) + 1, 256);
  return {
    header,
    preamble,
    lines,
    groups,
    tokens,
    tokenPattern,
    names: counters.name,
    firstNs,
    windowNs: lastNs - firstNs,
    pidStride: roundUp(maxPid - minPid + 1, 100),
    podInums,
    inumStride,
    goroutineStride: roundUp(maxG - minG + 1, 0x100000),
    restNs,
  };
}

/** The same-length stand-in for a token in copy `copy`: the copy and the token's index lead, so all differ. */
function mapToken(plan: Plan, token: Plan['tokens'][number], copy: number): string {
  const hex = (value: number, width: number) => value.toString(16).padStart(width, '0');
  switch (token.cls) {
    case 'hex64':
      return `${hex(copy, 6)}${hex(token.index, 4)}${token.text.slice(10)}`;
    case 'uuid':
      return `${hex(copy, 5)}${hex(token.index, 3)}${token.text.slice(8)}`;
    case 'veth':
      return `veth${hex(copy, 5)}${hex(token.index, 3)}`;
    case 'name': {
      const suffix = (copy * plan.names + token.index).toString(36).padStart(6, '0');
      return `${token.text.slice(0, -6)}${suffix}`;
    }
  }
}

interface CopyShift {
  copy: number;
  ns: bigint;
  pid: number;
  inum: number;
  goroutine: number;
  tokens: Map<string, string>;
}

function copyShift(plan: Plan, copy: number, stepNs: bigint): CopyShift {
  return {
    copy,
    ns: BigInt(copy) * stepNs,
    pid: copy * plan.pidStride,
    inum: copy * plan.inumStride,
    goroutine: copy * plan.goroutineStride,
    tokens: new Map(plan.tokens.map((token) => [token.text, mapToken(plan, token, copy)])),
  };
}

function replaceTokens(plan: Plan, shift: CopyShift, text: string): string {
  return text.replace(plan.tokenPattern, (token) => shift.tokens.get(token) ?? token);
}

/** A group's chunk texts in a copy: tokens replaced across chunk boundaries, each chunk as long as before. */
function copyGroup(plan: Plan, shift: CopyShift, group: Group): string[] {
  if (!group.hasToken)
    return group.format === 'words' ? group.texts.map(latin1ToWords) : [...group.texts];
  const texts: string[] = [];
  for (const run of runsOf(group)) {
    const parts = run.map((i) => group.texts[i] ?? '');
    let joined = replaceTokens(plan, shift, parts.join(''));
    for (const part of parts) {
      texts.push(joined.slice(0, part.length));
      joined = joined.slice(part.length);
    }
  }
  return group.format === 'words' ? texts.map(latin1ToWords) : texts;
}

function copyLine(
  plan: Plan,
  shift: CopyShift,
  line: PlanLine,
  groupTexts: Map<number, string[]>,
  ns = line.ns + shift.ns,
): string {
  const tagged = planOf(line.tag) as TagPlan;
  const fields = [...line.fields];
  // A pid field may hold 0 or an error (ns_clone's return): only pids are shifted.
  for (const f of tagged.pids)
    if (Number(fields[f]) > 0) fields[f] = String(Number(fields[f]) + shift.pid);
  for (const f of tagged.inums) {
    const inum = Number(fields[f]);
    if (plan.podInums.has(inum)) fields[f] = String(inum + shift.inum);
  }
  for (const f of tagged.goroutines)
    fields[f] = (Number.parseInt(fields[f] ?? '', 16) + shift.goroutine).toString(16);
  let tail: string;
  const chunks = tagged.chunking;
  if (chunks && line.group !== null) {
    let texts = groupTexts.get(line.group);
    if (!texts) {
      texts = copyGroup(plan, shift, plan.groups[line.group] as Group);
      groupTexts.set(line.group, texts);
    }
    tail = [...fields.slice(0, chunks.textField), texts[line.chunkIndex] ?? ''].join('\t');
  } else {
    tail = fields
      .map((field, i) => {
        const copied = line.hasToken ? replaceTokens(plan, shift, field) : field;
        return tagged.words(i) ? latin1ToWords(copied) : copied;
      })
      .join('\t');
  }
  // The CRI reader's lines have pid 0 when tracefs did not know the process: it stays unknown.
  const pid = line.pid > 0 ? line.pid + shift.pid : line.pid;
  const data = `${line.tag}\t${ns}\t${pid}\t${line.tid + shift.pid}\t${tail}\n`;
  const raw = `${line.rawPrefix}${JSON.stringify(data)}${line.rawSuffix}`;
  return `${JSON.stringify({ src: line.src, raw })}\n`;
}

interface SynthesisHeader extends RecordingHeader {
  synthetic: {
    version: number;
    copies: number;
    overlap: number;
    stepNs: string;
    fixtureSha256: string;
  };
}

const fixtureHash = () => createHash('sha256').update(readFileSync(fixture)).digest('hex');

function stepNsOf(plan: Plan): bigint {
  return BigInt(Math.round(Number(plan.windowNs) * (1 - overlap)));
}

/** Writes the copies merged by timestamp, as bpftrace would have printed them; returns the lines written. */
function synthesise(plan: Plan, file: string): number {
  const stepNs = stepNsOf(plan);
  const header: SynthesisHeader = {
    ...plan.header,
    synthetic: {
      version: synthesisVersion,
      copies,
      overlap,
      stepNs: stepNs.toString(),
      fixtureSha256: fixtureHash(),
    },
  };
  const fd = openSync(`${file}.partial`, 'w');
  let buffer = `${JSON.stringify(header)}\n${plan.preamble.map((line) => `${line}\n`).join('')}`;
  let written = 0;
  const active: { shift: CopyShift; next: number; groupTexts: Map<number, string[]> }[] = [];
  let admitted = 0;
  const headNs = (copy: (typeof active)[number]) =>
    (plan.lines[copy.next] as PlanLine).ns + copy.shift.ns;
  for (;;) {
    let best: (typeof active)[number] | undefined;
    for (const copy of active) if (!best || headNs(copy) < headNs(best)) best = copy;
    if (
      admitted < copies &&
      (!best || (plan.lines[0] as PlanLine).ns + BigInt(admitted) * stepNs < headNs(best))
    ) {
      active.push({ shift: copyShift(plan, admitted, stepNs), next: 0, groupTexts: new Map() });
      admitted++;
      continue;
    }
    if (!best) break;
    const line = plan.lines[best.next] as PlanLine;
    let ns = line.ns + best.shift.ns;
    if (line.tag === tickTag) {
      // A tick says that every line before it is out: in the merge, only before what a copy has still to give.
      for (const copy of active) {
        const rest = (plan.restNs[copy.next] as bigint) + copy.shift.ns - 1n;
        if (rest < ns) ns = rest;
      }
      const nextCopy = plan.firstNs + BigInt(admitted) * stepNs - 1n;
      if (admitted < copies && nextCopy < ns) ns = nextCopy;
    }
    buffer += copyLine(plan, best.shift, line, best.groupTexts, ns);
    written++;
    best.next++;
    if (best.next >= plan.lines.length) active.splice(active.indexOf(best), 1);
    if (buffer.length > 1 << 20) {
      writeSync(fd, buffer);
      buffer = '';
    }
  }
  writeSync(fd, buffer);
  closeSync(fd);
  rmSync(file, { force: true });
  // Renamed only when complete, so that an interrupted synthesis is never taken for a finished one.
  renameSync(`${file}.partial`, file);
  return written;
}

// ---- One measured run ----------------------------------------------------------------------------------------

interface RunResult {
  lines: number;
  events: number;
  pipelineSeconds: number;
  replaySeconds: number;
  checkSeconds: number;
  handshakes: number;
  teardowns: number;
  notOk: number;
  mismatches: string[];
  problems: number;
  maxRssMb: number;
  sampledPeakRssMb: number;
  heapUsedMb: number;
}

/** What the original recording gives, keyed by kind and sandbox id, as JSON. */
function expectedRecords(plan: Plan): Map<string, string> {
  const pipeline = pipelineFor(plan.header);
  const records: HandshakeRecord[] = [];
  for (const line of readRecordingFile(fixture).lines)
    records.push(...replayLine(pipeline, line).records);
  records.push(...pipeline.finish().records);
  return new Map(
    records.map((record) => [`${record.kind}:${record.sandboxId}`, JSON.stringify(record)]),
  );
}

/** A synthetic record mapped back into the original's ids, pids and times. */
class Normaliser {
  private reverse = new Map<number, { pattern: RegExp; tokens: Map<string, string> }>();

  constructor(
    private readonly plan: Plan,
    private readonly stepNs: bigint,
  ) {}

  copyOf(record: HandshakeRecord): number {
    return Number.parseInt(record.sandboxId?.slice(0, 6) ?? 'x', 16);
  }

  normalise(record: HandshakeRecord, copy: number): string {
    let reverse = this.reverse.get(copy);
    if (!reverse) {
      const tokens = new Map(this.plan.tokens.map((t) => [mapToken(this.plan, t, copy), t.text]));
      const pattern = new RegExp([...tokens.keys()].map(escapeRegExp).join('|'), 'g');
      reverse = { pattern, tokens };
      // Records come from the few copies in flight: keeping every copy's patterns would weigh on the RSS measured.
      if (this.reverse.size >= 4) this.reverse.clear();
      this.reverse.set(copy, reverse);
    }
    const { pattern, tokens } = reverse;
    const back = JSON.parse(
      JSON.stringify(record).replace(pattern, (token) => tokens.get(token) ?? token),
    ) as HandshakeRecord;
    const shiftNs = BigInt(copy) * this.stepNs;
    const time = (text: string) => {
      const seconds = BigInt(Date.parse(`${text.slice(0, 19)}Z`) / 1000);
      return rfc3339Nanos(seconds * 1_000_000_000n + BigInt(text.slice(20, 29)) - shiftNs);
    };
    back.start = time(back.start);
    back.end = time(back.end);
    for (const phase of back.phases) {
      phase.start = time(phase.start);
      if (phase.end !== null) phase.end = time(phase.end);
      const a = phase.attributes;
      if (typeof a['process.pid'] === 'number') a['process.pid'] -= copy * this.plan.pidStride;
      const inum = a['podwire.netns_inum'];
      if (typeof inum === 'number' && !this.plan.podInums.has(inum) && inum > 0) {
        const original = inum - copy * this.plan.inumStride;
        if (this.plan.podInums.has(original)) a['podwire.netns_inum'] = original;
      }
      const g = a['podwire.go.goroutine'];
      if (typeof g === 'string')
        a['podwire.go.goroutine'] = (
          Number.parseInt(g, 16) -
          copy * this.plan.goroutineStride
        ).toString(16);
      const runc = a['podwire.runc.create'];
      if (typeof runc === 'string') a['podwire.runc.create'] = time(runc);
    }
    return JSON.stringify(back);
  }
}

function firstDifference(a: unknown, b: unknown, path = ''): string {
  if (JSON.stringify(a) === JSON.stringify(b)) return '';
  if (typeof a === 'object' && a && typeof b === 'object' && b) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const key of keys) {
      const inner = firstDifference(
        (a as Record<string, unknown>)[key],
        (b as Record<string, unknown>)[key],
        `${path}.${key}`,
      );
      if (inner) return inner;
    }
  }
  return `${path}: ${JSON.stringify(a)?.slice(0, 120)} != ${JSON.stringify(b)?.slice(0, 120)}`;
}

async function measure(file: string): Promise<RunResult> {
  const plan = buildPlan(fixture);
  const expected = expectedRecords(plan);
  const lines = createInterface({
    input: createReadStream(file, { highWaterMark: 1 << 20 }),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  let pipeline: Pipeline | null = null;
  let normaliser: Normaliser | null = null;
  let copiesInFile = 0;
  const seen = new Set<string>();
  const result: RunResult = {
    lines: 0,
    events: 0,
    pipelineSeconds: 0,
    replaySeconds: 0,
    checkSeconds: 0,
    handshakes: 0,
    teardowns: 0,
    notOk: 0,
    mismatches: [],
    problems: 0,
    maxRssMb: 0,
    sampledPeakRssMb: 0,
    heapUsedMb: 0,
  };
  let peakRss = process.memoryUsage.rss();
  const check = (records: HandshakeRecord[]) => {
    const started = performance.now();
    for (const record of records) {
      if (record.kind === 'handshake') result.handshakes++;
      else result.teardowns++;
      if (record.outcome !== 'ok') result.notOk++;
      const copy = (normaliser as Normaliser).copyOf(record);
      const normal = (normaliser as Normaliser).normalise(record, copy);
      const key = `${record.kind}:${JSON.parse(normal).sandboxId}`;
      const want = expected.get(key);
      if (seen.has(`${copy}:${key}`) && result.mismatches.length < 5)
        result.mismatches.push(`copy ${copy}: ${key} reported twice`);
      seen.add(`${copy}:${key}`);
      if (want !== normal && result.mismatches.length < 5) {
        result.mismatches.push(
          want === undefined
            ? `copy ${copy}: ${key} is not in the original recording`
            : `copy ${copy}: ${key} differs at ${firstDifference(JSON.parse(normal), JSON.parse(want))}`,
        );
      }
    }
    result.checkSeconds += (performance.now() - started) / 1000;
  };
  const wall = performance.now();
  for await (const text of lines) {
    if (!pipeline) {
      const header = JSON.parse(text) as SynthesisHeader;
      pipeline = pipelineFor(header);
      normaliser = new Normaliser(plan, BigInt(header.synthetic.stepNs));
      copiesInFile = header.synthetic.copies;
      continue;
    }
    result.lines++;
    const wrapper = JSON.parse(text) as { src: string; raw?: string; probe?: string };
    if (wrapper.raw === undefined) {
      replayLine(pipeline, wrapper as unknown as RecordedLine);
      continue;
    }
    const started = performance.now();
    const out = pipeline.push(wrapper.src, wrapper.raw);
    result.pipelineSeconds += (performance.now() - started) / 1000;
    result.problems += out.problems.length;
    if (out.records.length > 0) check(out.records);
    if ((result.lines & 4095) === 0) peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }
  if (!pipeline) throw new Error(`${file} is empty`);
  const started = performance.now();
  const out = pipeline.finish();
  result.pipelineSeconds += (performance.now() - started) / 1000;
  result.problems += out.problems.length;
  check(out.records);
  result.replaySeconds = (performance.now() - wall) / 1000 - result.checkSeconds;
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
  result.events = pipeline.counters.events;
  result.problems += pipeline.counters.malformedLines;
  const wantHandshakes = [...expected.keys()].filter((k) => k.startsWith('handshake:')).length;
  const wantTeardowns = expected.size - wantHandshakes;
  if (result.handshakes !== wantHandshakes * copiesInFile)
    result.mismatches.push(`${result.handshakes} handshakes, not ${wantHandshakes * copiesInFile}`);
  if (result.teardowns !== wantTeardowns * copiesInFile)
    result.mismatches.push(`${result.teardowns} teardowns, not ${wantTeardowns * copiesInFile}`);
  if (seen.size !== expected.size * copiesInFile)
    result.mismatches.push(`${seen.size} distinct records, not ${expected.size * copiesInFile}`);
  result.maxRssMb = process.resourceUsage().maxRSS / 1024;
  result.sampledPeakRssMb = peakRss / (1024 * 1024);
  result.heapUsedMb = process.memoryUsage().heapUsed / (1024 * 1024);
  return result;
}

// ---- The parent: synthesis once, then runs, then the summary ---------------------------------------------------

function cachedHeader(file: string): SynthesisHeader['synthetic'] | null {
  if (!existsSync(file)) return null;
  const fd = openSync(file, 'r');
  const buffer = Buffer.alloc(4096);
  const read = readSync(fd, buffer, 0, buffer.length, 0);
  closeSync(fd);
  const first = buffer.subarray(0, read).toString('utf8').split('\n')[0] ?? '';
  try {
    return (JSON.parse(first) as SynthesisHeader).synthetic ?? null;
  } catch {
    return null;
  }
}

/**
 * Time by function from a .cpuprofile, inclusive (a function and what it calls), for podwire's own code and the
 * collector: self time alone misleads here, because V8 inlines the small functions into their callers.
 */
function profileSummary(file: string, top = 30): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: {
      id: number;
      callFrame: { functionName: string; url: string; lineNumber: number };
      children?: number[];
    }[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes)
    for (const child of node.children ?? []) parent.set(child, node.id);
  const inclusive = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    total += delta;
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (!frame) break;
      const ours = frame.url.includes('/dist/src/') || frame.functionName === '(garbage collector)';
      if (!ours) continue;
      const where = `${frame.functionName || '(anonymous)'} ${frame.url.replace(/^.*\/dist\//, '')}:${frame.lineNumber + 1}`;
      if (seen.has(where)) continue;
      seen.add(where);
      inclusive.set(where, (inclusive.get(where) ?? 0) + delta);
    }
  });
  return [...inclusive]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(
      ([where, us]) =>
        `${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1e6).toFixed(2).padStart(6)} s  ${where}`,
    )
    .join('\n');
}

const columns = [4, 9, 9, 11, 10, 10, 12, 11, 12, 6];
const row = (cells: (string | number)[]) =>
  cells
    .map((cell, i) => String(cell).padEnd(columns[i] ?? 0))
    .join(' ')
    .trimEnd();
const load = () => loadavg()[0]?.toFixed(2) ?? '-';

async function main(): Promise<void> {
  const runFile = process.argv.indexOf('--run');
  if (runFile >= 0) {
    const file = process.argv[runFile + 1];
    if (!file) throw new Error('--run needs the synthetic recording');
    process.stdout.write(`${JSON.stringify(await measure(file))}\n`);
    return;
  }
  mkdirSync(cacheDir, { recursive: true });
  const file = join(
    cacheDir,
    `replay-${fixtureName.replace(/\.ndjson$/, '')}-${copies}x-overlap${overlap}.ndjson`,
  );
  const plan = buildPlan(fixture);
  const cached = cachedHeader(file);
  if (
    regenerate ||
    !cached ||
    cached.version !== synthesisVersion ||
    cached.fixtureSha256 !== fixtureHash()
  ) {
    const started = performance.now();
    const written = synthesise(plan, file);
    console.log(
      `synthesised ${file}: ${written} probe lines, ${(statSync(file).size / 1e9).toFixed(2)} GB, in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
  } else console.log(`using ${file} (REGENERATE=1 to make it again)`);
  // Another bench (replay-otlp) only needs the file.
  if (process.env.SYNTHESISE_ONLY === '1') return;
  const stepMs = Number(stepNsOf(plan)) / 1e6;
  console.log(
    `replay-throughput: ${copies} copies of ${fixtureName} (window ${(Number(plan.windowNs) / 1e6).toFixed(0)} ms, a copy every ${stepMs.toFixed(0)} ms: overlap ${overlap}), ${runs} runs, each a process of its own`,
  );
  console.log(
    `machine: ${cpus().length} CPUs, kernel ${release()}, node ${process.version}; pipeline_s is the time inside Pipeline.push/finish, replay_s adds reading the file and its JSON wrapper`,
  );
  console.log(
    row([
      'run',
      'lines',
      'events',
      'pipeline_s',
      'events/s',
      'replay_s',
      'replay_ev/s',
      'maxRSS_MB',
      'sampled_MB',
      'load',
      'records',
    ]),
  );
  const results: RunResult[] = [];
  const profileDir = join(cacheDir, 'profiles');
  if (profile) rmSync(profileDir, { recursive: true, force: true });
  let failed = false;
  for (let run = 1; run <= runs; run++) {
    const flags = profile ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
    const loadBefore = load();
    const child = spawnSync(
      process.execPath,
      [...flags, fileURLToPath(import.meta.url), '--run', file],
      { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24, encoding: 'utf8' },
    );
    const last = child.stdout.trim().split('\n').at(-1) ?? '';
    if (child.status !== 0 || !last.startsWith('{'))
      throw new Error(`run ${run} failed (exit ${child.status ?? child.signal}): ${last}`);
    const r = JSON.parse(last) as RunResult;
    results.push(r);
    console.log(
      row([
        run,
        r.lines,
        r.events,
        r.pipelineSeconds.toFixed(2),
        Math.round(r.events / r.pipelineSeconds),
        r.replaySeconds.toFixed(2),
        Math.round(r.events / r.replaySeconds),
        r.maxRssMb.toFixed(0),
        r.sampledPeakRssMb.toFixed(0),
        loadBefore,
        `${r.handshakes} handshakes + ${r.teardowns} teardowns, ${r.notOk} not ok`,
      ]),
    );
    if (r.mismatches.length > 0 || r.notOk > 0 || r.problems > 0) {
      failed = true;
      console.error(
        `run ${run}: THE SYNTHETIC RECORDING OR THE PIPELINE IS WRONG: ${r.notOk} records not ok, ${r.problems} input problems`,
      );
      for (const mismatch of r.mismatches) console.error(`  ${mismatch}`);
    }
  }
  const rate = median(results.map((r) => r.events / r.pipelineSeconds));
  const replayRate = median(results.map((r) => r.events / r.replaySeconds));
  const rss = median(results.map((r) => r.maxRssMb));
  const worstRss = Math.max(...results.map((r) => r.maxRssMb));
  console.log(
    `median: ${Math.round(rate)} events/s through Pipeline (target >= ${targetEventsPerSecond}: ${rate >= targetEventsPerSecond ? 'met' : 'MISSED'}); ${Math.round(replayRate)} events/s replaying the file`,
  );
  console.log(
    `peak RSS: median ${rss.toFixed(0)} MB, worst ${worstRss.toFixed(0)} MB (target <= ${targetPeakRssMb} MB: ${worstRss <= targetPeakRssMb ? 'met' : 'MISSED'})`,
  );
  if (failed)
    console.error(
      'FAILED: the records are not the original ones, copied (see above): numbers are void',
    );
  if (profile) {
    for (const name of readdirSync(profileDir)
      .filter((n) => n.endsWith('.cpuprofile'))
      .slice(0, 1)) {
      console.log(`\ntime by function, inclusive, run 1 (${join(profileDir, name)}):`);
      console.log(profileSummary(join(profileDir, name)));
    }
  }
  if (failed) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(`replay-throughput: ${error instanceof Error ? error.message : error}`);
  process.exitCode = 1;
});
