// How podwire doctor reads and decides, with no kernel or bpftrace involved.
// What it reads of bpftrace, its own probe files and the node's facts, and what it concludes from them.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tracefsMountFix } from '../../src/doctor/container.js';
import {
  attachCheck,
  attachPoints,
  bpftraceFeatures,
  type Check,
  type CommandRun,
  type NodeReadings,
  neededTracepoints,
  nodeChecks,
  parseBpftraceInfo,
  parseBpftraceVersion,
  probeMode,
  tracefsMountPoints,
  tracepointName,
  tracingCanWork,
  wildcardMatches,
} from '../../src/doctor/features.js';
import { probesDir } from '../../src/probes/program.js';

/** `bpftrace --info 2>&1` as root on the development machine: Debian's bpftrace 0.17.0, kernel 6.18 without kprobes. */
const INFO_0_17 = `System
  OS: Linux 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0
  Arch: x86_64

Build
  version: v0.17.0
  LLVM: 14.0.6
  unsafe uprobe: no
  bfd: no
  libdw (DWARF support): yes

Kernel helpers
  probe_read: yes
  probe_read_str: yes
  probe_read_user: yes
  probe_read_user_str: yes
  probe_read_kernel: yes
  probe_read_kernel_str: yes
  get_current_cgroup_id: yes
  send_signal: yes
  override_return: yes
  get_boot_ns: yes
  dpath: no
  skboutput: no

Kernel features
  Instruction limit: 1000000
  Loop support: yes
  btf: yes
  map batch: yes
  uprobe refcount (depends on Build:bcc bpf_attach_uprobe refcount): yes

Map types
  hash: yes
  percpu hash: yes
  array: yes
  percpu array: yes
  stack_trace: yes
  perf_event_array: yes

Probe types
  kprobe: yes
  tracepoint: yes
  perf_event: yes
  kfunc: no
  iter:task: no
  iter:task_file: no
  kprobe_multi: no
  raw_tp_special: yes
`;

/**
 * The "Probe types" section as newer bpftrace prints it, where kfunc became fentry (the keys bpftrace's
 * own runtime tests read). Not a recording: no newer bpftrace runs on the development machine.
 */
const PROBE_TYPES_NEWER = `Probe types
  kprobe: yes
  tracepoint: yes
  perf_event: yes
  fentry: yes
  kprobe_multi: yes
  uprobe_multi: yes
`;

/** `bpftrace -e 'BEGIN { printf("ok\\n"); exit(); }'` as root on the same machine. */
const ATTACH_STDERR =
  'ERROR: Unknown error -1: couldn\'t set RLIMIT_MEMLOCK for bpftrace. If your program is not loading, you can try "ulimit -l 8192" to fix the problem\n';
const ATTACH_STDOUT = 'Attaching 1 probe...\nok\n\n\n';

function ran(stdout: string, stderr = '', code: number | null = 0): CommandRun {
  return { code, stdout, stderr, timedOut: false, notFound: false, path: '/usr/bin/x' };
}

const notFound: CommandRun = {
  code: null,
  stdout: '',
  stderr: '',
  timedOut: false,
  notFound: true,
  path: null,
};

/** What doctor read on the development machine, as root, once npm run setup mounted tracefs. */
function thisMachine(): NodeReadings {
  return {
    root: true,
    kernel: { release: '6.18.44-fc-v669', machine: 'x86_64' },
    btf: { present: true, bytes: 5_516_713 },
    tracefsMounts: ['/sys/kernel/tracing'],
    uprobeEvents: { state: 'writable' },
    kprobeEvents: false,
    objdump: ran('GNU objdump (GNU Binutils for Debian) 2.40\n'),
    bpftraceVersion: ran('bpftrace v0.17.0\n'),
    bpftraceInfo: ran('', INFO_0_17),
    bpftraceAttach: ran(ATTACH_STDOUT, ATTACH_STDERR),
    attachTimeoutMs: 20_000,
    tracepoints: {
      needed: [
        { name: 'syscalls:sys_enter_execve', files: ['cni.bt', 'sandbox.bt'], present: true },
        { name: 'sched:sched_process_exit', files: ['cni.bt'], present: true },
        { name: 'netlink:netlink_extack', files: ['rtnetlink.bt'], present: true },
      ],
    },
  };
}

const byName = (checks: Check[], name: string): Check => {
  const check = checks.find((c) => c.name === name);
  if (!check) throw new Error(`no check named ${name}`);
  return check;
};

describe('bpftrace --info', () => {
  it('reads every "key: value" line with its section, keys with colons included', () => {
    const entries = parseBpftraceInfo(INFO_0_17);
    expect(entries).toContainEqual({ section: 'Build', key: 'version', value: 'v0.17.0' });
    expect(entries).toContainEqual({ section: 'Probe types', key: 'kfunc', value: 'no' });
    expect(entries).toContainEqual({
      section: 'Kernel features',
      key: 'uprobe refcount (depends on Build:bcc bpf_attach_uprobe refcount)',
      value: 'yes',
    });
    expect(entries).toContainEqual({ section: 'Probe types', key: 'iter:task', value: 'no' });
  });

  it('on 0.17: fentry is "kfunc: no", kprobe programs load, uprobes cannot go inside a function', () => {
    const features = bpftraceFeatures(parseBpftraceInfo(INFO_0_17));
    expect(features.fentry).toEqual({ key: 'kfunc', available: false });
    expect(features.kprobe).toBe(true);
    expect(features.uprobeInsideFunctions).toBe(false);
    expect(features.uprobeLines).toEqual(['unsafe uprobe: no', 'uprobe refcount: yes']);
  });

  it('on newer versions: fentry by its own name, uprobe_multi among the uprobe lines', () => {
    const features = bpftraceFeatures(parseBpftraceInfo(PROBE_TYPES_NEWER));
    expect(features.fentry).toEqual({ key: 'fentry', available: true });
    expect(features.uprobeLines).toEqual(['uprobe_multi: yes']);
    expect(features.uprobeInsideFunctions).toBeNull();
  });

  it('reads the version from bpftrace --version', () => {
    expect(parseBpftraceVersion('bpftrace v0.17.0\n')).toBe('0.17.0');
    expect(parseBpftraceVersion('bpftrace v0.23.2\n')).toBe('0.23.2');
    expect(parseBpftraceVersion('bash: bpftrace: command not found')).toBeNull();
  });
});

describe('the tracepoints podwire attaches to', () => {
  it('takes attach points from code only: comma lists expanded, comments, strings and predicates skipped', () => {
    const program = [
      '// tracepoint:syscalls:sys_enter_comment is only mentioned here',
      '/* tracepoint:syscalls:sys_enter_block_comment */',
      'tracepoint:syscalls:sys_exit_recvfrom,',
      'tracepoint:syscalls:sys_exit_recvmsg',
      '/ @recv[tid] && {{CNI_BIN_FILTER}} /',
      '{',
      '  if (1) { printf("} tracepoint:fake:in_string { /\\n"); }',
      '}',
      'tracepoint:sched:sched_process_exit,t:net:net_dev_queue /pid == tid/ { exit(); }',
      'uprobe:/usr/bin/containerd:0x1d992c0 { @x = 1; }',
      'BEGIN { printf("ready\\n"); }',
    ].join('\n');
    expect(attachPoints(program)).toEqual([
      'tracepoint:syscalls:sys_exit_recvfrom',
      'tracepoint:syscalls:sys_exit_recvmsg',
      'tracepoint:sched:sched_process_exit',
      't:net:net_dev_queue',
      'uprobe:/usr/bin/containerd:0x1d992c0',
      'BEGIN',
    ]);
  });

  it('names tracepoints as under /sys/kernel/tracing/events, and only tracepoints', () => {
    expect(tracepointName('tracepoint:syscalls:sys_enter_execve')).toBe(
      'syscalls:sys_enter_execve',
    );
    expect(tracepointName('t:sched:sched_process_exec')).toBe('sched:sched_process_exec');
    expect(tracepointName('kprobe:do_sys_open')).toBeNull();
    expect(tracepointName('BEGIN')).toBeNull();
  });

  it('lists every tracepoint in probes/*.bt once, with the files that need it', () => {
    const dir = probesDir();
    const programs = readdirSync(dir)
      .filter((file) => file.endsWith('.bt'))
      .map((file) => ({ file, program: readFileSync(join(dir, file), 'utf8') }));
    const needed = neededTracepoints(programs);
    const names = needed.map((tp) => tp.name);

    expect(new Set(names).size).toBe(names.length);
    for (const name of names) expect(name).toMatch(/^\w+:\w+$/);
    expect(needed.find((tp) => tp.name === 'syscalls:sys_enter_execve')?.files).toEqual([
      'cni.bt',
      'sandbox.bt',
    ]);
    // plugin-io-syscalls.bt attaches one body to a comma-joined pair.
    expect(names).toEqual(
      expect.arrayContaining([
        'syscalls:sys_exit_recvfrom',
        'syscalls:sys_exit_recvmsg',
        'sched:sched_process_exit',
        'netlink:netlink_extack',
      ]),
    );
    // Every tracepoint in the files' code is found: the raw text holds no other attach point of that form.
    for (const { program } of programs) {
      const code = program.replace(/\/\/.*$/gm, '');
      for (const [, name] of code.matchAll(/tracepoint:(\w+:\w+)/g)) expect(names).toContain(name);
    }
  });

  it('matches bpftrace wildcards', () => {
    expect(wildcardMatches('sys_enter_*', 'sys_enter_execve')).toBe(true);
    expect(wildcardMatches('sys_enter_*', 'sys_exit_execve')).toBe(false);
    expect(wildcardMatches('sys_enter_execve', 'sys_enter_execveat')).toBe(false);
  });

  it('finds tracefs in /proc/self/mounts, escaped paths included', () => {
    const mounts = [
      'sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0',
      'tracefs /sys/kernel/tracing tracefs rw,relatime 0 0',
      'tracefs /mnt/my\\040trace tracefs rw,relatime 0 0',
    ].join('\n');
    expect(tracefsMountPoints(mounts)).toEqual(['/sys/kernel/tracing', '/mnt/my trace']);
    expect(tracefsMountPoints('sysfs /sys sysfs rw 0 0\n')).toEqual([]);
  });
});

describe('bpftrace attaching', () => {
  it('counts the "ok" a BEGIN probe printed, and calls the RLIMIT_MEMLOCK error noise', () => {
    const check = attachCheck(ran(ATTACH_STDOUT, ATTACH_STDERR), true, 20_000);
    expect(check.status).toBe('ok');
    expect(check.detail).toMatch(/RLIMIT_MEMLOCK error is noise/);
  });

  it("names bpftrace's own error, not the memlock line, when nothing attached", () => {
    const check = attachCheck(
      ran('', `${ATTACH_STDERR}ERROR: Error loading program: BEGIN (try -v)\n`, 1),
      true,
      20_000,
    );
    expect(check.status).toBe('missing');
    expect(check.detail).toContain('ERROR: Error loading program: BEGIN (try -v)');
    expect(check.fix).toMatch(/by hand/);
  });

  it('says when bpftrace hung, and that it needs root otherwise', () => {
    const hung = attachCheck({ ...ran('', '', null), timedOut: true }, true, 20_000);
    expect(hung.detail).toMatch(/within 20 s/);
    expect(attachCheck(null, false, 20_000)).toMatchObject({
      status: 'warn',
      detail: expect.stringMatching(/needs root/),
    });
  });
});

describe('deciding from the readings', () => {
  const scenarios: Record<string, NodeReadings> = {
    'this machine': thisMachine(),
    'a fresh machine (tracefs not mounted)': {
      ...thisMachine(),
      tracefsMounts: [],
      uprobeEvents: null,
      kprobeEvents: null,
      tracepoints: null,
    },
    'a user without root': {
      ...thisMachine(),
      root: false,
      uprobeEvents: null,
      kprobeEvents: null,
      bpftraceInfo: null,
      bpftraceAttach: null,
      tracepoints: null,
    },
    'a node without bpftrace': {
      ...thisMachine(),
      bpftraceVersion: notFound,
      bpftraceInfo: notFound,
      bpftraceAttach: notFound,
    },
  };

  it.each(Object.entries(scenarios))(
    '%s: every warn and missing comes with a fix',
    (_, readings) => {
      for (const check of nodeChecks(readings)) {
        if (check.status !== 'ok') expect(check.fix, check.name).toBeTruthy();
      }
    },
  );

  it('this machine: tracing works with tracepoints and tracefs uprobes, kprobes missing and not needed', () => {
    const checks = nodeChecks(thisMachine());
    expect(tracingCanWork(checks)).toBe(true);
    expect(probeMode(checks)).toBe('tracepoints + tracefs uprobes (no kprobes)');
    expect(byName(checks, 'kprobes')).toMatchObject({
      status: 'missing',
      detail: expect.stringContaining('podwire does not need them'),
    });
    expect(byName(checks, 'fentry')).toMatchObject({
      status: 'missing',
      detail: 'bpftrace --info: kfunc: no; podwire does not need it',
    });
    expect(byName(checks, 'bpftrace').detail).toBe('bpftrace v0.17.0 (/usr/bin/x)');
  });

  it('a fresh machine: tracefs is missing with the mount command, and tracing cannot work', () => {
    const checks = nodeChecks(scenarios['a fresh machine (tracefs not mounted)'] as NodeReadings);
    expect(byName(checks, 'tracefs')).toMatchObject({ status: 'missing', fix: tracefsMountFix() });
    expect(byName(checks, 'tracepoints')).toMatchObject({
      status: 'missing',
      fix: tracefsMountFix(),
    });
    expect(tracingCanWork(checks)).toBe(false);
    expect(probeMode(checks)).toMatch(/^none/);
  });

  it('without root: says which checks need root, and does not claim tracing works', () => {
    const checks = nodeChecks(scenarios['a user without root'] as NodeReadings);
    const skipped = checks
      .filter((c) => c.detail.startsWith('not checked: needs root'))
      .map((c) => c.name);
    expect(skipped).toEqual([
      'uprobe_events',
      'kprobes',
      'fentry',
      'uprobes',
      'bpftrace attach',
      'tracepoints',
    ]);
    expect(byName(checks, 'root').detail).toContain(skipped.join(', '));
    expect(byName(checks, 'tracefs').status).toBe('ok'); // /proc/self/mounts needs no root
    expect(tracingCanWork(checks)).toBe(false);
    expect(probeMode(checks)).toBe('tracepoints + tracefs uprobes (not verified: needs root)');
  });

  it('a missing tracepoint stops tracing, named with the probe file that needs it', () => {
    const readings = thisMachine();
    readings.tracepoints = {
      needed: [
        { name: 'syscalls:sys_enter_execve', files: ['cni.bt', 'sandbox.bt'], present: false },
        { name: 'sched:sched_process_exit', files: ['cni.bt'], present: true },
      ],
    };
    const checks = nodeChecks(readings);
    expect(byName(checks, 'tracepoints')).toMatchObject({
      status: 'missing',
      detail: '1 of 2 tracepoints are missing: syscalls:sys_enter_execve (cni.bt, sandbox.bt)',
      fix: expect.stringContaining('CONFIG_FTRACE_SYSCALLS'),
    });
    expect(tracingCanWork(checks)).toBe(false);
  });

  it('a node with kprobes and fentry: available, not needed', () => {
    const readings = thisMachine();
    readings.kprobeEvents = true;
    readings.bpftraceInfo = ran('', PROBE_TYPES_NEWER);
    const checks = nodeChecks(readings);
    expect(byName(checks, 'kprobes').status).toBe('ok');
    expect(byName(checks, 'fentry').status).toBe('ok');
    expect(probeMode(checks)).toBe(
      'tracepoints + tracefs uprobes (kprobes and fentry available but not needed)',
    );
  });

  it('no uprobe events: tracing still works, without CRI calls', () => {
    const readings = thisMachine();
    readings.uprobeEvents = { state: 'absent' };
    const checks = nodeChecks(readings);
    expect(byName(checks, 'uprobe_events').status).toBe('missing');
    expect(tracingCanWork(checks)).toBe(true);
    expect(probeMode(checks)).toMatch(/^tracepoints only/);
  });
});
