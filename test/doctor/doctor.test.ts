// `podwire doctor` on this machine, checked the way a user would.
// Against tracefs, `bpftrace --version` and the containerd binary on disk. Runs the built CLI (npm run build first).

import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { DoctorReport } from '../../src/doctor/doctor.js';

const isRoot = process.getuid?.() === 0;
const rootReason =
  'needs root: the kernel checks read /sys/kernel/tracing and load BPF programs; run the tests as root';
const DEBIAN_CONTAINERD = '/usr/bin/containerd';

function installed(command: string, ...args: string[]): string | null {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    return null;
  }
}
const bpftraceVersion = installed('bpftrace', '--version');
const hasObjdump = installed('objdump', '--version') !== null;
const hasSetpriv = installed('setpriv', '--version') !== null;

/** `podwire doctor ARGS` as a user runs it: the built CLI. */
const doctorArgs = (args: string[]): string[] => ['dist/src/cli.js', 'doctor', ...args];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function doctor(args: string[], prefix: string[] = []): Promise<Run> {
  const [command = process.execPath, ...rest] = [...prefix, process.execPath, ...doctorArgs(args)];
  return new Promise((resolve) => {
    execFile(command, rest, { encoding: 'utf8', timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function parseReport(run: Run): DoctorReport {
  try {
    return JSON.parse(run.stdout) as DoctorReport;
  } catch {
    throw new Error(
      `podwire doctor --json printed no JSON (exit ${run.code}): ${run.stderr.trim()}`,
    );
  }
}

let json: Run;
let report: DoctorReport;
let text: Run;

beforeAll(async () => {
  if (!existsSync('dist/src/doctor/doctor.js'))
    throw new Error('dist/src/doctor/doctor.js is missing: run npm run build first');
  const runtime = existsSync(DEBIAN_CONTAINERD) ? ['--runtime-binary', DEBIAN_CONTAINERD] : [];
  [json, text] = await Promise.all([doctor(['--json', ...runtime]), doctor(runtime)]);
  report = parseReport(json);
}, 90_000);

const check = (name: string) => report.checks.find((c) => c.name === name);

describe('podwire doctor', () => {
  it('prints one JSON object with checks, runtimes, CNI bin dirs, probe mode and ok; exit code says ok', () => {
    expect(Object.keys(report)).toEqual(
      expect.arrayContaining(['checks', 'runtimes', 'cniBinDirs', 'probeMode', 'ok']),
    );
    expect(json.code).toBe(report.ok ? 0 : 1);
    expect(text.code).toBe(json.code);
    for (const c of report.checks) {
      expect(['ok', 'warn', 'missing']).toContain(c.status);
      if (c.status !== 'ok') expect(c.fix, c.name).toBeTruthy();
    }
  });

  it('prints one line per check, and the fix on the line after every warn and missing', () => {
    const lines = text.stdout.split('\n');
    for (const c of report.checks) {
      const at = lines.findIndex((line) => new RegExp(`^${c.status}\\s+${c.name}\\s`).test(line));
      expect(at, c.name).toBeGreaterThanOrEqual(0);
      if (c.status !== 'ok') expect(lines[at + 1]?.trim()).toBe(`fix: ${c.fix}`);
    }
    expect(text.stdout).toContain(`probe mode: ${report.probeMode}`);
  });

  it.skipIf(!bpftraceVersion)(
    `names the bpftrace that bpftrace --version names${bpftraceVersion ? '' : ' (skipped: bpftrace not installed)'}`,
    () => {
      expect(check('bpftrace')?.status).toBe('ok');
      expect(check('bpftrace')?.detail).toContain(bpftraceVersion?.trim());
    },
  );

  it('lists the CNI bin dirs that exist, with their plugins', () => {
    for (const dir of report.cniBinDirs) {
      expect(existsSync(dir.dir)).toBe(true);
      for (const plugin of dir.plugins) expect(existsSync(`${dir.dir}/${plugin}`)).toBe(true);
    }
    if (existsSync('/usr/lib/cni/bridge')) {
      expect(report.cniBinDirs.find((d) => d.dir === '/usr/lib/cni')?.plugins).toContain('bridge');
    }
  });

  it("says where the plugins' netlink and stdout will be probed, and why at the syscalls if so", () => {
    const plugins = report.cniBinDirs.reduce((sum, dir) => sum + dir.plugins.length, 0);
    expect(report.pluginProbes.plugins).toBe(plugins);
    const row = text.stdout.split('\n').find((line) => /\splugin probes\s/.test(line));
    if (plugins === 0) {
      expect(row).toBeUndefined();
      return;
    }
    if (report.pluginProbes.mode === 'uprobes') {
      expect(report.pluginProbes.reasons).toEqual([]);
      expect(row).toMatch(/^ok\s+plugin probes\s+.*own code/);
    } else {
      expect(row).toMatch(/^warn\s+plugin probes\s+.*system-wide syscalls/);
      for (const reason of report.pluginProbes.reasons) expect(row).toContain(reason);
    }
    // Debian's reference plugins are Go 1.17+ on x86-64: all of them can be probed in their own code.
    if (
      existsSync('/usr/lib/cni/bridge') &&
      report.cniBinDirs.every((d) => d.dir === '/usr/lib/cni')
    )
      expect(report.pluginProbes.mode).toBe('uprobes');
  });
});

describe.skipIf(!existsSync(DEBIAN_CONTAINERD) || !hasObjdump)(
  `podwire doctor --runtime-binary ${DEBIAN_CONTAINERD}${existsSync(DEBIAN_CONTAINERD) && hasObjdump ? '' : ' (skipped: needs /usr/bin/containerd and objdump: npm run setup installs them)'}`,
  () => {
    it('names containerd 1.6 and every CRI method with its symbol, entry offset and RETs', () => {
      const containerd = report.runtimes.find((r) => r.binary === DEBIAN_CONTAINERD);
      expect(containerd).toMatchObject({
        status: 'ok',
        source: '--runtime-binary',
        version: expect.stringMatching(/^1\.6\./),
        goVersion: expect.stringMatching(/^go1\.19\./),
      });
      const run = containerd?.methods.find((m) => m.method === 'RunPodSandbox');
      expect(run).toMatchObject({
        symbol: 'github.com/containerd/containerd/pkg/cri/server.(*criService).RunPodSandbox',
        entryOffset: '0x19992ca', // the offset podwire trace writes into uprobe_events
      });
      expect(run?.returns).toBeGreaterThan(0);
      expect(containerd?.methods.map((m) => m.method)).toEqual([
        'RunPodSandbox',
        'StopPodSandbox',
        'RemovePodSandbox',
        'CreateContainer',
        'StartContainer',
      ]);
      expect(text.stdout).toMatch(/RunPodSandbox\s+entry 0x19992ca\s+\d+ RETs/);
    });

    it('says in one line why a binary that is not containerd cannot be probed', async () => {
      const run = await doctor(['--json', '--runtime-binary', '/bin/sh']);
      const [runtime] = parseReport(run).runtimes;
      expect(runtime?.status).toBe('missing');
      expect(runtime?.error).toMatch(
        /^\/bin\/sh: .*: pass the path of the containerd daemon binary$/,
      );
    }, 60_000);
  },
);

describe.skipIf(!isRoot)(
  `podwire doctor as root${isRoot ? '' : ` (skipped: ${rootReason})`}`,
  () => {
    it('finds tracefs mounted where npm run setup mounts it', () => {
      expect(existsSync('/sys/kernel/tracing/events')).toBe(true);
      expect(check('tracefs')).toEqual({
        name: 'tracefs',
        status: 'ok',
        detail: 'mounted at /sys/kernel/tracing',
      });
    });

    it('reports kprobes as tracefs shows them, and that podwire does not need them', () => {
      const kprobes = check('kprobes');
      expect(kprobes?.status).toBe(
        existsSync('/sys/kernel/tracing/kprobe_events') ? 'ok' : 'missing',
      );
      expect(kprobes?.detail).toMatch(/podwire does not need them/);
    });

    it('attaches a bpftrace probe, finds every tracepoint, and says tracing can work', () => {
      expect(check('bpftrace attach')?.status).toBe('ok');
      expect(check('uprobe_events')?.status).toBe('ok');
      expect(check('tracepoints')?.status).toBe('ok');
      expect(check('tracepoints')?.detail).toMatch(/^all \d+ tracepoints/);
      expect(report.ok).toBe(true);
      expect(json.code).toBe(0);
      const kprobes = existsSync('/sys/kernel/tracing/kprobe_events');
      if (!kprobes && check('fentry')?.status !== 'ok')
        expect(report.probeMode).toBe('tracepoints + tracefs uprobes (no kprobes)');
    });

    it('leaves no test uprobe event behind', () => {
      const events = readFileSync('/sys/kernel/tracing/uprobe_events', 'utf8');
      expect(events).not.toMatch(/\/doctor_check /);
    });

    it.skipIf(!hasSetpriv)(
      `as an ordinary user: prints what it can, names the checks that need root, exits 1${hasSetpriv ? '' : ' (skipped: needs setpriv)'}`,
      async () => {
        const run = await doctor(
          ['--json'],
          ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'],
        );
        const user = parseReport(run);
        expect(run.code).toBe(1);
        expect(user.ok).toBe(false);
        const root = user.checks.find((c) => c.name === 'root');
        expect(root).toMatchObject({
          status: 'warn',
          detail: expect.stringMatching(/^not root: /),
        });
        expect(user.checks.find((c) => c.name === 'tracefs')?.status).toBe('ok');
        expect(user.checks.find((c) => c.name === 'bpftrace attach')?.detail).toMatch(
          /^not checked: needs root/,
        );
      },
      60_000,
    );
  },
);
