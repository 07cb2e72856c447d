// `podwire doctor`: whether podwire can trace on this node, and a one-line fix for each problem it finds.
// It checks the kernel, tracefs, bpftrace, the runtimes and the CNI plugins; its exit code says whether tracing works.

import { existsSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import type { Command } from 'commander';
import { nodeRoot, runningRuntimes } from '../binaries/discover.js';
import { pluginFilesIn, surveyPlugins } from '../binaries/plugins.js';
import { inspectContainerd } from '../binaries/runtime.js';
import { printJson } from '../cli/output.js';
import { defaultCniBinDirs } from '../probes/program.js';
import { defaultPollMs, pollLibrary, pollLibraryFix } from '../probes/runner.js';
import { containerChecks, readContainer, runtimesHiddenMessage } from './container.js';
import {
  type Check,
  type CheckStatus,
  nodeChecks,
  probeMode,
  readNode,
  tracingCanWork,
} from './features.js';

export interface RuntimeReport {
  binary: string;
  runtime: 'containerd';
  /** How doctor came to it: a running process, or --runtime-binary. */
  source: 'running' | '--runtime-binary';
  pids: number[];
  status: CheckStatus;
  version: string | null;
  goVersion: string | null;
  criApiVersion: string | null;
  messageShift: 0 | 8 | null;
  /** The CRI methods podwire probes: the Go function, its entry as a file offset, and how many RETs it has. */
  methods: {
    method: string;
    symbol: string;
    kind: string;
    entryOffset: string;
    returns: number;
  }[];
  missing: { method: string; reason: string }[];
  notes: string[];
  /** Why the binary cannot be probed, with what to do, in one line. */
  error?: string;
}

export interface CniBinDirReport {
  dir: string;
  source: 'default' | '--cni-bin-dir';
  status: CheckStatus;
  plugins: string[];
  detail: string;
  fix?: string;
}

export interface DoctorReport {
  checks: Check[];
  runtimes: RuntimeReport[];
  cniBinDirs: CniBinDirReport[];
  /** Default CNI bin dirs that do not exist here (not a problem, shown so the user knows where doctor looked). */
  cniBinDirsAbsent: string[];
  probeMode: string;
  /** Where the plugins' netlink and stdout are probed: in their own code, or at the syscalls (and why). */
  pluginProbes: { mode: 'uprobes' | 'syscalls'; reasons: string[]; plugins: number };
  /** Why no runtime is seen although one may run (no hostPID, no SYS_PTRACE), with the fix; null when nothing hides them. */
  runtimesHidden: string | null;
  ok: boolean;
}

export interface DoctorOptions {
  runtimeBinaries: string[];
  /** null: the defaults that exist. */
  cniBinDirs: string[] | null;
}

async function runtimeReport(
  binary: string,
  source: RuntimeReport['source'],
  pids: number[],
): Promise<RuntimeReport> {
  const base = { binary, runtime: 'containerd' as const, source, pids };
  const inspection = await inspectContainerd(binary).catch((error: unknown) => ({
    error: `${binary}: ${error instanceof Error ? error.message : String(error)}`,
  }));
  if ('error' in inspection) {
    return {
      ...base,
      status: 'missing',
      version: null,
      goVersion: null,
      criApiVersion: null,
      messageShift: null,
      methods: [],
      missing: [],
      notes: [],
      error: inspection.error,
    };
  }
  return {
    ...base,
    status: inspection.missing.length > 0 ? 'warn' : 'ok',
    version: inspection.version,
    goVersion: inspection.goVersion,
    criApiVersion: inspection.criApiVersion,
    messageShift: inspection.messageShift,
    methods: inspection.points.map((point) => ({
      method: point.method,
      symbol: point.symbol,
      kind: point.kind,
      entryOffset: `0x${point.entryOffset.toString(16)}`,
      returns: point.returnOffsets.length,
    })),
    missing: inspection.missing,
    notes: inspection.notes,
  };
}

/** `dir` as the node's runtime names it, read under `root` (podwire's way to the node's files). */
function cniBinDirReport(
  dir: string,
  source: CniBinDirReport['source'],
  root: string,
): CniBinDirReport {
  let plugins: string[];
  try {
    plugins = pluginFilesIn(`${root}${dir}`).map((path) => basename(path));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    return {
      dir,
      source,
      status: 'missing',
      plugins: [],
      detail: `cannot read it (${code})`,
      fix: 'pass --cni-bin-dir with the directory your CNI config finds its plugins in (often /opt/cni/bin)',
    };
  }
  if (plugins.length === 0)
    return {
      dir,
      source,
      status: 'warn',
      plugins,
      detail: 'no executable plugins in it',
      fix: 'pass --cni-bin-dir with the directory your CNI config finds its plugins in',
    };
  return { dir, source, status: 'ok', plugins, detail: `${plugins.length} plugins` };
}

export async function doctorReport(options: DoctorOptions): Promise<DoctorReport> {
  const running = runningRuntimes();
  const pidsOf = (binary: string) => running.find((r) => r.binary === resolve(binary))?.pids ?? [];
  const runtimeTargets =
    options.runtimeBinaries.length > 0
      ? options.runtimeBinaries.map((binary) => ({
          binary,
          source: '--runtime-binary' as const,
          pids: pidsOf(binary),
        }))
      : running.map((r) => ({ binary: r.binary, source: 'running' as const, pids: r.pids }));

  const [readings, runtimes] = await Promise.all([
    readNode(),
    Promise.all(runtimeTargets.map((t) => runtimeReport(t.binary, t.source, t.pids))),
  ]);
  const containerWithholds = containerChecks(readContainer());
  const checks = [...nodeChecks(readings), ...containerWithholds, pollLibraryCheck()];

  const root = nodeRoot();
  const defaults = defaultCniBinDirs.map((dir) => ({ dir, exists: isDirectory(`${root}${dir}`) }));
  const cniBinDirs = options.cniBinDirs
    ? options.cniBinDirs.map((dir) => cniBinDirReport(dir, '--cni-bin-dir', root))
    : defaults.filter((d) => d.exists).map((d) => cniBinDirReport(d.dir, 'default', root));
  const cniBinDirsAbsent = options.cniBinDirs
    ? []
    : defaults.filter((d) => !d.exists).map((d) => d.dir);

  const survey = surveyPlugins(cniBinDirs.map((d) => `${root}${d.dir}`));
  return {
    checks,
    runtimes,
    cniBinDirs,
    cniBinDirsAbsent,
    probeMode: probeMode(checks),
    pluginProbes: { mode: survey.mode, reasons: survey.reasons, plugins: survey.plugins.length },
    runtimesHidden: runtimes.length === 0 ? runtimesHiddenMessage() : null,
    ok: tracingCanWork(checks) && containerWithholds.every((check) => check.status !== 'missing'),
  };
}

/** Whether bpftrace can be made to read its buffers on a timer: without it every traced event wakes bpftrace. */
function pollLibraryCheck(): Check {
  const name = 'bpftrace poll';
  return existsSync(pollLibrary)
    ? {
        name,
        status: 'ok',
        detail: `${pollLibrary}: bpftrace reads its buffers every ${defaultPollMs} ms, not woken for each event`,
      }
    : {
        name,
        status: 'warn',
        detail: `${pollLibrary} is not built: bpftrace will be woken for each event, a cost to every traced process`,
        fix: pollLibraryFix,
      };
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

const row = (status: CheckStatus | '', name: string, detail: string) =>
  `${status.padEnd(9)}${name.padEnd(17)}${detail}`.trimEnd();
const fixLine = (fix: string | undefined) => (fix ? [`${' '.repeat(9)}fix: ${fix}`] : []);

/** The report as a person reads it: one line per check, the fix under every warn and missing. */
export function formatDoctor(report: DoctorReport): string {
  const root = report.checks.find((check) => check.name === 'root')?.status === 'ok';
  const lines: string[] = ['node'];
  for (const check of report.checks) {
    lines.push(row(check.status, check.name, check.detail), ...fixLine(check.fix));
  }

  lines.push('', 'runtimes');
  if (report.runtimes.length === 0 && report.runtimesHidden) {
    lines.push(row('missing', 'containerd', report.runtimesHidden));
  } else if (report.runtimes.length === 0) {
    lines.push(
      row(
        'warn',
        'containerd',
        root
          ? 'no containerd runs on this node: CRI calls are not traced, handshakes come from kernel events alone'
          : 'no containerd found, but only root sees every process',
      ),
      ...fixLine('pass --runtime-binary PATH to name one (podwire trace takes the same flag)'),
    );
  }
  for (const runtime of report.runtimes) {
    const running =
      runtime.pids.length > 0 ? `running as pid ${runtime.pids.join(', ')}` : 'not running';
    if (runtime.error) {
      const error = runtime.error.includes(runtime.binary)
        ? runtime.error
        : `${runtime.binary}: ${runtime.error}`;
      lines.push(row(runtime.status, 'containerd', error));
      continue;
    }
    const go = runtime.goVersion ? `, ${runtime.goVersion}` : '';
    lines.push(
      row(
        runtime.status,
        'containerd',
        `${runtime.binary}: ${runtime.version ?? 'unknown version'}${go}, ${running} (${runtime.source})`,
      ),
    );
    const width = Math.max(...runtime.methods.map((m) => m.method.length), 0) + 2;
    for (const m of runtime.methods) {
      lines.push(
        `${' '.repeat(11)}${m.method.padEnd(width)}entry ${m.entryOffset.padEnd(10)} ${String(m.returns).padStart(3)} RETs  ${m.symbol}`,
      );
    }
    for (const miss of runtime.missing) {
      lines.push(`${' '.repeat(11)}${miss.method.padEnd(width)}not probed: ${miss.reason}`);
    }
    if (runtime.missing.length > 0)
      lines.push(
        ...fixLine(
          'the methods above go untraced on this build; podwire still traces the others and the kernel side',
        ),
      );
  }

  lines.push('', 'cni bin dirs');
  for (const dir of report.cniBinDirs) {
    const plugins = dir.plugins.length > 0 ? `: ${dir.plugins.join(', ')}` : '';
    lines.push(row(dir.status, dir.dir, `${dir.detail}${plugins}`), ...fixLine(dir.fix));
  }
  if (report.cniBinDirs.length === 0) {
    lines.push(
      row(
        'warn',
        '(none)',
        `no CNI bin dir found among ${defaultCniBinDirs.join(', ')}: plugin execs are not seen`,
      ),
      ...fixLine('pass --cni-bin-dir DIR with the directory your CNI config finds its plugins in'),
    );
  } else if (report.cniBinDirsAbsent.length > 0) {
    lines.push(
      `${' '.repeat(9)}(also looked in ${report.cniBinDirsAbsent.join(', ')}: not present)`,
    );
  }

  if (report.cniBinDirs.length > 0 && report.pluginProbes.plugins > 0) {
    const { mode, reasons } = report.pluginProbes;
    lines.push(
      mode === 'uprobes'
        ? row('ok', 'plugin probes', "netlink and stdout probed in the plugins' own code (uprobes)")
        : row(
            'warn',
            'plugin probes',
            `netlink and stdout probed at the system-wide syscalls, a cost to every process: ${reasons.join('; ')}`,
          ),
      ...(mode === 'syscalls'
        ? fixLine(
            'plugins built with Go 1.17+ for x86-64 are probed in their own code; the others need the syscalls',
          )
        : []),
    );
  }

  lines.push(
    '',
    `probe mode: ${report.probeMode}`,
    report.ok
      ? 'tracing can work: yes'
      : `tracing can work: ${root ? 'no (see missing above)' : 'not verified (needs root)'}`,
  );
  return `${lines.join('\n')}\n`;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description(
      'check what this node offers podwire: kernel, tracefs, bpftrace, runtimes, CNI plugins; exit 1 when tracing cannot work',
    )
    .option('--json', 'one JSON object on stdout')
    .option(
      '--runtime-binary <path>',
      'a container runtime binary to inspect (default: every running containerd)',
      collect,
    )
    .option(
      '--cni-bin-dir <dir>',
      `a directory of CNI plugins (default: those of ${defaultCniBinDirs.join(', ')} that exist)`,
      collect,
    )
    .action(async (options: { json?: boolean; runtimeBinary?: string[]; cniBinDir?: string[] }) => {
      const report = await doctorReport({
        runtimeBinaries: options.runtimeBinary ?? [],
        cniBinDirs: options.cniBinDir ?? null,
      });
      if (options.json) printJson(report);
      else process.stdout.write(formatDoctor(report));
      process.exitCode = report.ok ? 0 : 1;
    });
}
