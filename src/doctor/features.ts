// What this node's kernel and bpftrace offer podwire's probes, for `podwire doctor`.
//
// Pure functions first, which turn readings of tool output and files into checks; then the reads and runs that
// gather them.
//
// The kernel is asked through tracefs (kprobe_events, uprobe_events, events/) and bpftrace by running it: bpftrace
// --info loads test programs only, so it can say "kprobe: yes" on a kernel without kprobe_events.

import { execFile } from 'node:child_process';
import {
  accessSync,
  appendFileSync,
  constants,
  existsSync,
  readdirSync,
  readFileSync,
  statSync,
} from 'node:fs';
import { machine, release } from 'node:os';
import { delimiter, join } from 'node:path';
import { probesDir } from '../probes/program.js';
import { memlockNoise } from '../probes/runner.js';
import { tracefs } from '../probes/uprobe-events.js';
import type { Check } from './check.js';
import { tracefsMountFix } from './container.js';

export type { Check, CheckStatus } from './check.js';

/** Without any of these podwire's kernel program cannot run: doctor exits 1. */
export const neededForTracing = ['btf', 'tracefs', 'bpftrace', 'bpftrace attach', 'tracepoints'];

const asRoot = 'run podwire doctor as root (sudo podwire doctor)';
const notNeeded = 'nothing to do: podwire traces with tracepoints and tracefs uprobes';

// ---- bpftrace's own words ----

export interface BpftraceInfoEntry {
  section: string;
  key: string;
  value: string;
}

/**
 * `bpftrace --info` (stderr on 0.17, stdout on later versions) as entries: a line without indent opens a section,
 * an indented `key: value` line belongs to it. Keys may hold a colon ("... (depends on Build:bcc ...)"), values
 * start after the first colon followed by a space.
 */
export function parseBpftraceInfo(text: string): BpftraceInfoEntry[] {
  const entries: BpftraceInfoEntry[] = [];
  let section = '';
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (!/^\s/.test(line)) {
      section = line.trim();
      continue;
    }
    const match = /^\s+(.*?):\s+(.*)$/.exec(line);
    if (match?.[1] && match[2] !== undefined) {
      entries.push({ section, key: match[1], value: match[2].trim() });
    }
  }
  return entries;
}

function yesNo(entries: BpftraceInfoEntry[], key: string): boolean | null {
  const entry = entries.find((e) => e.key === key);
  if (entry?.value === 'yes') return true;
  if (entry?.value === 'no') return false;
  return null;
}

export interface BpftraceFeatures {
  /** fentry probes, named `kfunc` by older bpftrace (0.17) and `fentry` by newer; null when --info names neither. */
  fentry: { key: 'fentry' | 'kfunc'; available: boolean } | null;
  /** What --info says, which is only whether a kprobe program loads, not whether it can attach. */
  kprobe: boolean | null;
  /** Every --info line about uprobes, as printed: "unsafe uprobe: no", "uprobe_multi: yes". */
  uprobeLines: string[];
  /** "unsafe uprobe": whether bpftrace puts uprobes inside a function (podwire's RET probes need that). */
  uprobeInsideFunctions: boolean | null;
}

export function bpftraceFeatures(entries: BpftraceInfoEntry[]): BpftraceFeatures {
  const fentry = yesNo(entries, 'fentry');
  const kfunc = yesNo(entries, 'kfunc');
  return {
    fentry:
      fentry !== null
        ? { key: 'fentry', available: fentry }
        : kfunc !== null
          ? { key: 'kfunc', available: kfunc }
          : null,
    kprobe: yesNo(entries, 'kprobe'),
    uprobeLines: entries
      .filter((e) => /uprobe/i.test(e.key))
      .map((e) => `${e.key.replace(/\s*\(.*\)$/, '')}: ${e.value}`),
    uprobeInsideFunctions: yesNo(entries, 'unsafe uprobe'),
  };
}

/** "bpftrace v0.17.0" → "0.17.0". */
export function parseBpftraceVersion(text: string): string | null {
  return /bpftrace\s+v?(\d[^\s]*)/.exec(text)?.[1] ?? null;
}

// ---- what podwire's probes attach to ----

/** Comments and string contents blanked (lengths kept), so that braces and slashes are only the program's own. */
function codeOnly(program: string): string {
  let out = '';
  let i = 0;
  while (i < program.length) {
    const c = program[i];
    const next = program[i + 1];
    if (c === '/' && next === '/') {
      while (i < program.length && program[i] !== '\n') {
        out += ' ';
        i++;
      }
    } else if (c === '/' && next === '*') {
      const end = program.indexOf('*/', i + 2);
      const stop = end < 0 ? program.length : end + 2;
      out += program.slice(i, stop).replace(/[^\n]/g, ' ');
      i = stop;
    } else if (c === '"') {
      out += '"';
      i++;
      while (i < program.length && program[i] !== '"') {
        out += program[i] === '\n' ? '\n' : ' ';
        if (program[i] === '\\') {
          out += ' ';
          i++;
        }
        i++;
      }
      out += '"';
      i++;
    } else if (c === '#' && (i === 0 || program[i - 1] === '\n')) {
      while (i < program.length && program[i] !== '\n') {
        out += ' ';
        i++;
      }
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/**
 * The attach points of a bpftrace program, in order, comma-joined lists expanded: `tracepoint:syscalls:
 * sys_enter_execve`, `BEGIN`, `uprobe:/usr/bin/containerd:0x1d992c0`. Between one body and the next `{` stand the
 * attach points, then maybe a predicate, which starts at a `/` after whitespace (podwire's {{PLACEHOLDER}} filters
 * stand in predicates). Top-level struct and config blocks are not probes.
 */
export function attachPoints(program: string): string[] {
  const code = codeOnly(program.replace(/\{\{\w+\}\}/g, '0'));
  const points: string[] = [];
  let i = 0;
  while (i < code.length) {
    const open = code.indexOf('{', i);
    const head = code.slice(i, open < 0 ? code.length : open);
    // A predicate's `/` follows whitespace; a path inside an attach point (uprobe:/usr/...) follows a colon.
    const predicate = /(^|[\s,])\//.exec(head);
    const header = predicate ? head.slice(0, predicate.index + (predicate[1]?.length ?? 0)) : head;
    const tokens = header.split(/[\s,;]+/).filter((token) => token !== '');
    if (!['struct', 'union', 'config'].includes(tokens[0] ?? '')) {
      points.push(...tokens.filter((token) => /^[A-Za-z_][\w-]*(:|$)/.test(token)));
    }
    if (open < 0) break;
    let depth = 0;
    let j = open;
    for (; j < code.length; j++) {
      if (code[j] === '{') depth++;
      else if (code[j] === '}' && --depth === 0) break;
    }
    i = j + 1;
  }
  return points;
}

/** "tracepoint:syscalls:sys_enter_execve" (or "t:...") → "syscalls:sys_enter_execve"; null for other probes. */
export function tracepointName(point: string): string | null {
  const match = /^(?:tracepoint|t):([^:\s]+):([^:\s]+)$/.exec(point);
  return match ? `${match[1]}:${match[2]}` : null;
}

export interface NeededTracepoint {
  /** category:name, as under /sys/kernel/tracing/events/; may hold bpftrace's `*` wildcard. */
  name: string;
  /** The probe files that attach to it. */
  files: string[];
}

/** Every tracepoint the given probe programs attach to, once, sorted, with the files that need it. */
export function neededTracepoints(
  programs: { file: string; program: string }[],
): NeededTracepoint[] {
  const byName = new Map<string, Set<string>>();
  for (const { file, program } of programs) {
    for (const point of attachPoints(program)) {
      const name = tracepointName(point);
      if (!name) continue;
      const files = byName.get(name) ?? new Set<string>();
      files.add(file);
      byName.set(name, files);
    }
  }
  return [...byName.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, files]) => ({ name, files: [...files].sort() }));
}

/** bpftrace's `*` wildcard against one name. */
export function wildcardMatches(pattern: string, name: string): boolean {
  const escaped = pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${escaped.join('.*')}$`).test(name);
}

/** Where tracefs is mounted, from /proc/self/mounts (octal escapes such as \040 undone). */
export function tracefsMountPoints(mounts: string): string[] {
  return mounts
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields[2] === 'tracefs' && fields[1])
    .map((fields) =>
      (fields[1] ?? '').replace(/\\([0-7]{3})/g, (_, octal: string) =>
        String.fromCharCode(Number.parseInt(octal, 8)),
      ),
    );
}

// ---- from readings to checks ----

export interface CommandRun {
  /** Exit code; null when the command was ended by a signal or the timeout. */
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** The executable is not on PATH. */
  notFound: boolean;
  /** Where the executable was found on PATH. */
  path: string | null;
}

export type UprobeEventsReading =
  | { state: 'writable' }
  | { state: 'absent' }
  | { state: 'failed'; error: string };

export type TracepointsReading =
  | { needed: (NeededTracepoint & { present: boolean })[] }
  | { error: string };

/** The raw facts doctor decides from; null where a reading needs root or tracefs and could not be made. */
export interface NodeReadings {
  root: boolean;
  kernel: { release: string; machine: string };
  btf: { present: boolean; bytes: number | null };
  tracefsMounts: string[];
  uprobeEvents: UprobeEventsReading | null;
  kprobeEvents: boolean | null;
  objdump: CommandRun;
  bpftraceVersion: CommandRun;
  bpftraceInfo: CommandRun | null;
  bpftraceAttach: CommandRun | null;
  attachTimeoutMs: number;
  tracepoints: TracepointsReading | null;
}

const firstLine = (text: string): string =>
  text
    .split('\n')
    .map((line) => line.trim())
    .find((line) => line !== '') ?? '';

const tracefsAtItsPlace = (r: NodeReadings): boolean => r.tracefsMounts.includes(tracefs);

const needsRoot = (name: string, why: string): Check => ({
  name,
  status: 'warn',
  detail: `not checked: needs root (${why})`,
  fix: asRoot,
});

function tracefsCheck(r: NodeReadings): Check {
  if (tracefsAtItsPlace(r))
    return { name: 'tracefs', status: 'ok', detail: `mounted at ${tracefs}` };
  const elsewhere =
    r.tracefsMounts.length > 0 ? ` (mounted only at ${r.tracefsMounts.join(', ')})` : '';
  return {
    name: 'tracefs',
    status: 'missing',
    detail: `not mounted at ${tracefs}${elsewhere}: bpftrace cannot list or attach tracepoints, podwire cannot create uprobe events`,
    fix: tracefsMountFix(),
  };
}

/** The checks that read tracefs: not root, or tracefs not mounted, says so instead. */
function tracefsBlocked(name: string, r: NodeReadings, why: string): Check | null {
  if (!r.root) return needsRoot(name, `${tracefs} is readable by root only; ${why}`);
  if (!tracefsAtItsPlace(r))
    return {
      name,
      status: 'missing',
      detail: `cannot check: tracefs is not mounted at ${tracefs}`,
      fix: tracefsMountFix(),
    };
  return null;
}

function uprobeEventsCheck(r: NodeReadings): Check {
  const name = 'uprobe_events';
  const blocked = tracefsBlocked(name, r, 'podwire creates its CRI uprobes there');
  if (blocked || !r.uprobeEvents)
    return blocked ?? needsRoot(name, 'podwire creates its CRI uprobes there');
  const file = join(tracefs, 'uprobe_events');
  switch (r.uprobeEvents.state) {
    case 'writable':
      return {
        name,
        status: 'ok',
        detail: `${file}: created and removed a test event (podwire puts its CRI uprobes here)`,
      };
    case 'absent':
      return {
        name,
        status: 'missing',
        detail: `no ${file}: the kernel has no uprobe events (CONFIG_UPROBE_EVENTS), so CRI calls cannot be traced`,
        fix: 'use a kernel with CONFIG_UPROBE_EVENTS=y; without it podwire traces the kernel side only',
      };
    case 'failed':
      return {
        name,
        status: 'missing',
        detail: `${file} refused a test event: ${r.uprobeEvents.error}`,
        fix: `read the kernel's reason in ${join(tracefs, 'error_log')}; without uprobe events podwire traces the kernel side only`,
      };
  }
}

function kprobesCheck(r: NodeReadings, info: BpftraceFeatures | null): Check {
  const name = 'kprobes';
  const blocked = tracefsBlocked(name, r, 'kprobe_events is there');
  if (blocked || r.kprobeEvents === null)
    return blocked ?? needsRoot(name, 'kprobe_events is in tracefs');
  if (r.kprobeEvents)
    return {
      name,
      status: 'ok',
      detail: `${join(tracefs, 'kprobe_events')} present: available, but podwire does not need them`,
    };
  const bpftraceSays =
    info?.kprobe === true
      ? '; bpftrace --info\'s "kprobe: yes" only means a kprobe program loads'
      : '';
  return {
    name,
    status: 'missing',
    detail: `no ${join(tracefs, 'kprobe_events')}: this kernel has no kprobes (CONFIG_KPROBES is off${bpftraceSays}); podwire does not need them`,
    fix: notNeeded,
  };
}

function fentryCheck(r: NodeReadings, info: BpftraceFeatures | null): Check {
  const name = 'fentry';
  if (!r.root) return needsRoot(name, 'bpftrace --info loads test programs into the kernel');
  if (!info) return bpftraceAbsent(name);
  if (!info.fentry)
    return {
      name,
      status: 'warn',
      detail: 'bpftrace --info names neither fentry nor kfunc; podwire does not need them',
      fix: notNeeded,
    };
  const said = `bpftrace --info: ${info.fentry.key}: ${info.fentry.available ? 'yes' : 'no'}`;
  return info.fentry.available
    ? { name, status: 'ok', detail: `${said}: available, but podwire does not need it` }
    : { name, status: 'missing', detail: `${said}; podwire does not need it`, fix: notNeeded };
}

function uprobesCheck(r: NodeReadings, info: BpftraceFeatures | null): Check {
  const name = 'uprobes';
  if (!r.root) return needsRoot(name, 'bpftrace --info loads test programs into the kernel');
  if (!info) return bpftraceAbsent(name);
  const said =
    info.uprobeLines.length > 0
      ? `bpftrace --info: ${info.uprobeLines.join(', ')}`
      : 'bpftrace --info has no uprobe lines';
  const inside =
    info.uprobeInsideFunctions === false
      ? '; bpftrace cannot probe inside a function, so podwire puts its RET probes through tracefs uprobe_events'
      : '';
  if (r.uprobeEvents?.state === 'absent')
    return {
      name,
      status: 'missing',
      detail: `${said}; the kernel has no uprobe events, so CRI calls cannot be traced`,
      fix: 'use a kernel with CONFIG_UPROBES=y and CONFIG_UPROBE_EVENTS=y',
    };
  return { name, status: 'ok', detail: `${said}${inside}` };
}

function bpftraceAbsent(name: string): Check {
  return {
    name,
    status: 'missing',
    detail: 'cannot check: bpftrace not found',
    fix: 'install bpftrace (Debian: apt-get install bpftrace)',
  };
}

function bpftraceCheck(r: NodeReadings): Check {
  const run = r.bpftraceVersion;
  if (run.notFound) return { ...bpftraceAbsent('bpftrace'), detail: 'bpftrace is not on PATH' };
  const version = parseBpftraceVersion(run.stdout + run.stderr);
  if (!version)
    return {
      name: 'bpftrace',
      status: 'missing',
      detail: `bpftrace --version printed no version: "${firstLine(run.stderr || run.stdout).slice(0, 120)}"`,
      fix: 'reinstall bpftrace (Debian: apt-get install --reinstall bpftrace)',
    };
  return {
    name: 'bpftrace',
    status: 'ok',
    detail: `bpftrace v${version} (${run.path ?? 'on PATH'})`,
  };
}

/** Whether a `BEGIN { printf("ok\n"); exit(); }` run attached: its "ok" line is the proof, the memlock line noise. */
export function attachCheck(run: CommandRun | null, root: boolean, timeoutMs: number): Check {
  const name = 'bpftrace attach';
  if (!root) return needsRoot(name, 'loading BPF programs needs CAP_BPF and CAP_PERFMON');
  if (!run || run.notFound) return bpftraceAbsent(name);
  const printedOk = run.stdout.split('\n').some((line) => line.trim() === 'ok');
  const errors = run.stderr
    .split('\n')
    .map((line) => line.trim())
    .filter(
      (line) => line !== '' && !memlockNoise.test(line) && !/^Attaching \d+ probe/.test(line),
    );
  const noise = memlockNoise.test(run.stderr)
    ? ' (its RLIMIT_MEMLOCK error is noise: the kernel charges BPF memory to the cgroup)'
    : '';
  if (printedOk) return { name, status: 'ok', detail: `a BEGIN probe attached and ran${noise}` };
  if (run.timedOut)
    return {
      name,
      status: 'missing',
      detail: `bpftrace did not attach a BEGIN probe within ${timeoutMs / 1000} s`,
      fix: `run bpftrace -e 'BEGIN { printf("ok\\n"); exit(); }' by hand to see where it hangs`,
    };
  const why = errors[0] ?? `exit code ${run.code ?? 'none (killed by a signal)'}`;
  return {
    name,
    status: 'missing',
    detail: `bpftrace could not attach a BEGIN probe: ${why.slice(0, 200)}`,
    fix: /permitted|permission/i.test(why)
      ? 'run podwire as root with CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (not in a restricted container)'
      : `run bpftrace -e 'BEGIN { printf("ok\\n"); exit(); }' by hand to see bpftrace's whole error`,
  };
}

function tracepointsCheck(r: NodeReadings): Check {
  const name = 'tracepoints';
  const blocked = tracefsBlocked(name, r, `the events are listed under ${join(tracefs, 'events')}`);
  if (blocked || !r.tracepoints) return blocked ?? needsRoot(name, 'tracefs is root-only');
  if ('error' in r.tracepoints)
    return {
      name,
      status: 'missing',
      detail: r.tracepoints.error,
      fix: 'reinstall podwire (npm ci && npm run build)',
    };
  const needed = r.tracepoints.needed;
  const absent = needed.filter((tp) => !tp.present);
  if (needed.length === 0)
    return {
      name,
      status: 'missing',
      detail: 'no tracepoint found in probes/*.bt: the probe files are not what podwire expects',
      fix: 'reinstall podwire (npm ci && npm run build)',
    };
  if (absent.length === 0) {
    const perCategory = new Map<string, number>();
    for (const tp of needed) {
      const category = tp.name.split(':')[0] ?? '';
      perCategory.set(category, (perCategory.get(category) ?? 0) + 1);
    }
    const counts = [...perCategory].map(([category, n]) => `${category} ${n}`).join(', ');
    return {
      name,
      status: 'ok',
      detail: `all ${needed.length} tracepoints podwire's probes attach to are present (${counts})`,
    };
  }
  const list = absent.map((tp) => `${tp.name} (${tp.files.join(', ')})`).join(', ');
  return {
    name,
    status: 'missing',
    detail: `${absent.length} of ${needed.length} tracepoints are missing: ${list}`,
    fix: absent.some((tp) => tp.name.startsWith('syscalls:'))
      ? 'use a kernel with CONFIG_FTRACE_SYSCALLS=y (syscalls:* tracepoints); podwire cannot trace without them'
      : 'use a kernel that has these tracepoints; podwire cannot trace without them',
  };
}

/** Every node check, in the order doctor prints them. */
export function nodeChecks(r: NodeReadings): Check[] {
  const infoRun = r.bpftraceInfo;
  const info =
    infoRun && !infoRun.notFound
      ? bpftraceFeatures(parseBpftraceInfo(`${infoRun.stdout}\n${infoRun.stderr}`))
      : null;
  const rootOnly = [
    'uprobe_events',
    'kprobes',
    'fentry',
    'uprobes',
    'bpftrace attach',
    'tracepoints',
  ];
  const objdumpVersion = firstLine(r.objdump.stdout);
  return [
    r.root
      ? { name: 'root', status: 'ok', detail: 'running as root' }
      : {
          name: 'root',
          status: 'warn',
          detail: `not root: ${rootOnly.join(', ')} need root and are not checked; podwire trace needs root`,
          fix: asRoot,
        },
    { name: 'kernel', status: 'ok', detail: `Linux ${r.kernel.release} ${r.kernel.machine}` },
    r.btf.present
      ? {
          name: 'btf',
          status: 'ok',
          detail: `/sys/kernel/btf/vmlinux (${((r.btf.bytes ?? 0) / 2 ** 20).toFixed(1)} MiB): the probes read curtask through it`,
        }
      : {
          name: 'btf',
          status: 'missing',
          detail:
            'no /sys/kernel/btf/vmlinux: the probes read curtask->nsproxy and ->mm through BTF',
          fix: 'use a kernel built with CONFIG_DEBUG_INFO_BTF=y',
        },
    tracefsCheck(r),
    uprobeEventsCheck(r),
    kprobesCheck(r, info),
    fentryCheck(r, info),
    uprobesCheck(r, info),
    r.objdump.code === 0
      ? { name: 'objdump', status: 'ok', detail: objdumpVersion }
      : {
          name: 'objdump',
          status: 'missing',
          detail: `${r.objdump.notFound ? 'objdump is not on PATH' : 'objdump --version failed'}: podwire finds the RETs of containerd's CRI handlers with it`,
          fix: 'install binutils (Debian: apt-get install binutils)',
        },
    bpftraceCheck(r),
    attachCheck(r.bpftraceAttach, r.root, r.attachTimeoutMs),
    tracepointsCheck(r),
  ];
}

/** Tracing can work when every check in `neededForTracing` is there and ok. */
export function tracingCanWork(checks: Check[]): boolean {
  return neededForTracing.every(
    (name) => checks.find((check) => check.name === name)?.status === 'ok',
  );
}

/** The probe mode podwire will use, in words: what attaches, and what exists but is not needed. */
export function probeMode(checks: Check[]): string {
  const status = (name: string) => checks.find((check) => check.name === name)?.status;
  const root = status('root') === 'ok';
  if (root && !tracingCanWork(checks))
    return 'none: tracing cannot work until the missing checks above are fixed';
  const base =
    status('uprobe_events') === 'missing'
      ? 'tracepoints only (no tracefs uprobes: CRI calls are not traced)'
      : 'tracepoints + tracefs uprobes';
  if (!root) return `${base} (not verified: needs root)`;
  const spare = ['kprobes', 'fentry'].filter((name) => status(name) === 'ok');
  if (spare.length > 0) return `${base} (${spare.join(' and ')} available but not needed)`;
  return status('kprobes') === 'missing' ? `${base} (no kprobes)` : base;
}

// ---- reading the node ----

function onPath(command: string): string | null {
  if (command.includes('/')) return existsSync(command) ? command : null;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // Not here.
    }
  }
  return null;
}

/** Runs a command to its end or the timeout (then execFile ends the child it started); never throws. */
export function runCommand(
  command: string,
  args: string[],
  timeoutMs: number,
): Promise<CommandRun> {
  const path = onPath(command);
  if (!path)
    return Promise.resolve({
      code: null,
      stdout: '',
      stderr: '',
      timedOut: false,
      notFound: true,
      path: null,
    });
  return new Promise((resolve) => {
    execFile(
      path,
      args,
      { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024, encoding: 'utf8' },
      (error, stdout, stderr) => {
        const failure = error as
          | (NodeJS.ErrnoException & { killed?: boolean; code?: unknown })
          | null;
        resolve({
          code: failure ? (typeof failure.code === 'number' ? failure.code : null) : 0,
          stdout,
          stderr,
          timedOut: failure?.killed === true,
          notFound: failure?.code === 'ENOENT',
          path,
        });
      },
    );
  });
}

/**
 * Creates a uprobe event on node's own binary (never enabled, so never hit) and removes it again. The group is
 * podwire_<pid>, which `podwire trace` removes at start if this process died in between.
 */
function tryUprobeEvents(): UprobeEventsReading {
  const file = join(tracefs, 'uprobe_events');
  if (!existsSync(file)) return { state: 'absent' };
  const event = `podwire_${process.pid}/doctor_check`;
  try {
    appendFileSync(file, `p:${event} ${process.execPath}:0x0\n`);
  } catch (error) {
    const log = join(tracefs, 'error_log');
    const last = existsSync(log)
      ? readFileSync(log, 'utf8').trim().split('\n').slice(-2).join(' | ')
      : '';
    return { state: 'failed', error: `${(error as Error).message}${last ? ` (${last})` : ''}` };
  }
  try {
    appendFileSync(file, `-:${event}\n`);
  } catch (error) {
    return {
      state: 'failed',
      error: `created ${event} but could not remove it (${(error as Error).message}); podwire trace removes it at start`,
    };
  }
  return { state: 'writable' };
}

function readTracepoints(): TracepointsReading {
  let dir: string;
  try {
    dir = probesDir();
  } catch (error) {
    return { error: (error as Error).message };
  }
  const programs = readdirSync(dir)
    .filter((file) => file.endsWith('.bt'))
    .sort()
    .map((file) => ({ file, program: readFileSync(join(dir, file), 'utf8') }));
  const events = join(tracefs, 'events');
  const list = (path: string): string[] => {
    try {
      return readdirSync(path);
    } catch {
      return [];
    }
  };
  return {
    needed: neededTracepoints(programs).map((tp) => {
      const [category = '', event = ''] = tp.name.split(':');
      const present = list(events)
        .filter((c) => wildcardMatches(category, c))
        .some((c) => list(join(events, c)).some((e) => wildcardMatches(event, e)));
      return { ...tp, present };
    }),
  };
}

export interface ReadNodeOptions {
  bpftrace?: string;
  attachTimeoutMs?: number;
}

/** Everything doctor reads and runs on this node; what needs root is skipped without it. */
export async function readNode(options: ReadNodeOptions = {}): Promise<NodeReadings> {
  const bpftrace = options.bpftrace ?? 'bpftrace';
  const attachTimeoutMs = options.attachTimeoutMs ?? 20_000;
  const root = process.getuid?.() === 0;
  let tracefsMounts: string[] = [];
  try {
    tracefsMounts = tracefsMountPoints(readFileSync('/proc/self/mounts', 'utf8'));
  } catch {
    // No /proc: reported as tracefs not mounted.
  }
  const mounted = tracefsMounts.includes(tracefs);
  let btfBytes: number | null = null;
  try {
    btfBytes = statSync('/sys/kernel/btf/vmlinux').size;
  } catch {
    // No BTF.
  }
  const [objdump, bpftraceVersion, bpftraceInfo, bpftraceAttach] = await Promise.all([
    runCommand('objdump', ['--version'], 10_000),
    runCommand(bpftrace, ['--version'], 10_000),
    root ? runCommand(bpftrace, ['--info'], 20_000) : Promise.resolve(null),
    root
      ? runCommand(bpftrace, ['-e', 'BEGIN { printf("ok\\n"); exit(); }'], attachTimeoutMs)
      : Promise.resolve(null),
  ]);
  return {
    root,
    kernel: { release: release(), machine: machine() },
    btf: { present: btfBytes !== null, bytes: btfBytes },
    tracefsMounts,
    uprobeEvents: root && mounted ? tryUprobeEvents() : null,
    kprobeEvents: root && mounted ? existsSync(join(tracefs, 'kprobe_events')) : null,
    objdump,
    bpftraceVersion,
    bpftraceInfo,
    bpftraceAttach,
    attachTimeoutMs,
    tracepoints: root && mounted ? readTracepoints() : null,
  };
}
