// Where podwire puts its uprobes in the CNI plugins, checked against the bytes of Debian's real plugin binaries.
// They come from containernetworking-plugins (scripts/setup.sh installs it); the program made from them is checked too.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseElf, vaddrToFileOffset } from '../../src/binaries/elf.js';
import { entryProbeOffset, functionByName, goFunctions } from '../../src/binaries/gosym.js';
import {
  attachNumber,
  hasRegisterAbi,
  inspectPlugin,
  type PluginInspection,
  pluginFingerprint,
  pluginFunctions,
  surveyPlugins,
} from '../../src/binaries/plugins.js';
import { attachPoints } from '../../src/doctor/features.js';
import { kernelProgram, pluginIoProgram, probesDir, withWords } from '../../src/probes/program.js';
import { isRoot } from '../lab/node.js';
import { expectEntryProbe } from './entry-probe.js';

const debianPlugins = '/usr/lib/cni';
const havePlugins = (() => {
  try {
    readFileSync(join(debianPlugins, 'bridge'));
    return true;
  } catch {
    return false;
  }
})();
const noPlugins = `no ${debianPlugins}/bridge: apt-get install containernetworking-plugins`;

const scratch = mkdtempSync(join(tmpdir(), 'podwire-plugins-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe.skipIf(!havePlugins)(
  `uprobe sites in Debian's CNI plugins${havePlugins ? '' : ` (skipped: ${noPlugins})`}`,
  () => {
    it("finds sendto, ParseNetlinkMessage and write in bridge, each probed on its stack check's jump", async () => {
      const path = join(debianPlugins, 'bridge');
      const bridge = inspectPlugin(path);
      expect(bridge.unsupported).toBeNull();
      expect(bridge.goVersion).toMatch(/^go1\.\d+/);
      const elf = parseElf(readFileSync(path));
      if (typeof elf === 'string') throw new Error(elf);
      const table = goFunctions(elf);
      if (typeof table === 'string') throw new Error(table);
      for (const hook of ['send', 'receive', 'write'] as const) {
        const functions = pluginFunctions[hook]
          .map((name) => functionByName(table, name))
          .filter((fn) => fn !== undefined);
        expect(bridge.offsets[hook]).toHaveLength(functions.length);
        expect(functions.length, hook).toBeGreaterThan(0);
        for (const [i, fn] of functions.entries()) {
          const offset = bridge.offsets[hook][i] ?? -1;
          // A conditional jump the kernel emulates: one trap per call instead of two (bench/README.md).
          expect(await expectEntryProbe(path, elf, fn, offset), fn.name).toMatch(/^jbe\s/);
        }
      }
    });

    it('finds no netlink in host-local (IPAM only), but its stdout', () => {
      const hostLocal = inspectPlugin(join(debianPlugins, 'host-local'));
      expect(hostLocal.offsets.send).toEqual([]);
      expect(hostLocal.offsets.receive).toEqual([]);
      expect(hostLocal.offsets.write.length).toBe(1);
    });

    it('probes every Debian plugin in its own code, so nothing on the node pays for syscall probes', () => {
      const survey = surveyPlugins([debianPlugins]);
      expect(survey.reasons).toEqual([]);
      expect(survey.mode).toBe('uprobes');
      const program = kernelProgram({
        cniBinDirs: [debianPlugins],
        netnsDirs: ['/run/netns'],
        plugins: survey,
      });
      const points = attachPoints(program);
      expect(points).toContain(
        `uprobe:${debianPlugins}/bridge:0x${survey.plugins.find((p) => p.path.endsWith('/bridge'))?.offsets.send[0]?.toString(16)}`,
      );
      for (const hot of ['sendto', 'sendmsg', 'recvfrom', 'recvmsg', 'write', 'socket'])
        expect(
          points.filter((p) => p.includes(`sys_enter_${hot}`)),
          hot,
        ).toEqual([]);
    });

    it('falls back to the syscalls, saying which plugin forced it, when one is not a Go program', () => {
      const dir = join(scratch, 'mixed');
      mkdirSync(dir, { recursive: true });
      for (const name of ['bridge', 'loopback'])
        copyFileSync(join(debianPlugins, name), join(dir, name));
      writeFileSync(join(dir, 'shell-plugin'), '#!/bin/sh\necho "{}"\n');
      chmodSync(join(dir, 'shell-plugin'), 0o755);
      writeFileSync(join(dir, 'README'), 'not executable: not a plugin\n');
      const survey = surveyPlugins([dir]);
      expect(survey.plugins.map((p) => p.path)).toEqual([
        join(dir, 'bridge'),
        join(dir, 'loopback'),
        join(dir, 'shell-plugin'),
      ]);
      expect(survey.mode).toBe('syscalls');
      expect(survey.reasons).toEqual([
        expect.stringMatching(/shell-plugin: not an ELF executable/),
      ]);
      const points = attachPoints(
        kernelProgram({ cniBinDirs: [dir], netnsDirs: ['/run/netns'], plugins: survey }),
      );
      expect(points).toContain('tracepoint:syscalls:sys_enter_sendto');
      expect(points.filter((p) => p.startsWith('uprobe:'))).toEqual([]);

      // A plugin replaced on disk changes the fingerprint the tracer compares to see plugins come and go.
      const before = pluginFingerprint([dir]);
      rmSync(join(dir, 'shell-plugin'));
      expect(pluginFingerprint([dir])).not.toBe(before);
      expect(surveyPlugins([dir]).mode).toBe('uprobes');
    });

    it('is asked for the syscalls, and says so', () => {
      const survey = surveyPlugins([debianPlugins], true);
      expect(survey.mode).toBe('syscalls');
      expect(survey.reasons[0]).toMatch(/--plugin-probes syscalls/);
    });
  },
);

// A Go program whose ELF symbols name the probed functions, deep in a big file: Debian's containerd (50 MB, its Go
// functions exported in .dynsym) stands in for a plugin built without -s (Calico's and Cilium's are tens of MB).
const namedContainerd = '/usr/bin/containerd';
const noNamed = !existsSync(namedContainerd)
  ? `needs ${namedContainerd}: npm run setup installs it`
  : !isRoot
    ? 'needs root: it runs bpftrace'
    : '';

/**
 * bpftrace compiling and attaching the plugin probes of `plugins` (and exiting at once): its stderr, or '' when it
 * attached.
 */
function attachError(plugins: PluginInspection[]): string {
  const program = [
    withWords(readFileSync(join(probesDir(), 'cni.bt'), 'utf8')).replace(
      '{{CNI_BIN_FILTER}}',
      'pid == 0',
    ),
    pluginIoProgram(readFileSync(join(probesDir(), 'plugin-io.bt'), 'utf8'), plugins),
    'BEGIN { exit(); }',
  ].join('\n');
  const file = join(scratch, 'attach.bt');
  writeFileSync(file, program);
  try {
    execFileSync('bpftrace', ['--unsafe', file], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, BPFTRACE_STRLEN: '200', BPFTRACE_MAX_STRLEN: '200' },
      timeout: 60_000,
    });
    return '';
  } catch (error) {
    return String((error as { stderr?: Buffer }).stderr ?? error);
  }
}

describe.skipIf(noNamed !== '')(
  `a plugin whose ELF symbols name its functions${noNamed ? ` (skipped: ${noNamed})` : ''}`,
  () => {
    it("is probed at the functions' addresses, which bpftrace attaches, where file offsets made it refuse the program", () => {
      // A copy: uprobes belong to the file, and the node's containerd may be running.
      const copy = join(scratch, 'named-plugin');
      copyFileSync(namedContainerd, copy);
      const plugin = inspectPlugin(copy);
      expect(plugin.unsupported).toBeNull();
      const elf = parseElf(readFileSync(copy));
      if (typeof elf === 'string') throw new Error(elf);
      const table = goFunctions(elf);
      if (typeof table === 'string') throw new Error(table);
      const sendto = functionByName(table, 'syscall.sendto');
      expect(sendto).toBeDefined();
      expect(plugin.offsets.send).toContain(sendto?.entry);
      for (const hook of ['send', 'receive', 'write'] as const)
        expect(plugin.offsets[hook].length, hook).toBeGreaterThan(0);
      expect(attachError([plugin])).toBe('');

      // The hazard: a function whose file offset, read as an address, lies inside another function's symbol (in
      // this binary: RunPodSandbox, 26 MB in). Its file offset makes bpftrace refuse the whole program; the number
      // podwire gives for it is its address, which bpftrace attaches.
      const run = functionByName(
        table,
        'github.com/containerd/containerd/pkg/cri/server.(*criService).RunPodSandbox',
      );
      if (!run) throw new Error('no RunPodSandbox in containerd');
      const runOffset = vaddrToFileOffset(elf, run.entry) as number;
      const probedAt = (write: number): PluginInspection => ({
        ...plugin,
        offsets: { send: [], receive: [], write: [write] },
      });
      expect(attachError([probedAt(entryProbeOffset(elf.data, runOffset))])).toMatch(
        /uprobe is in proper place/,
      );
      expect(attachNumber(elf, run, runOffset)).toBe(run.entry);
      expect(attachError([probedAt(run.entry)])).toBe('');
    }, 120_000);
  },
);

describe('plugin-io.bt with its attach points', () => {
  const fragment = readFileSync(join(probesDir(), 'plugin-io.bt'), 'utf8');
  const plugin = (path: string, send: number[], receive: number[], write: number[]) => ({
    path,
    unsupported: null,
    goVersion: 'go1.22.1',
    offsets: { send, receive, write },
  });

  it('gives every hook the uprobes of every plugin that has it, and leaves out a hook nobody has', () => {
    const program = pluginIoProgram(fragment, [
      plugin('/opt/cni/bin/bridge', [0x1000], [0x2000], [0x3000]),
      plugin('/opt/cni/bin/host-local', [], [], [0x4000]),
    ]);
    expect(attachPoints(program)).toEqual([
      'uprobe:/opt/cni/bin/bridge:0x1000',
      'uprobe:/opt/cni/bin/bridge:0x2000',
      'uprobe:/opt/cni/bin/bridge:0x3000',
      'uprobe:/opt/cni/bin/host-local:0x4000',
    ]);
    const noNetlink = pluginIoProgram(fragment, [plugin('/opt/cni/bin/static', [], [], [0x10])]);
    expect(attachPoints(noNetlink)).toEqual(['uprobe:/opt/cni/bin/static:0x10']);
    const code = noNetlink.replace(/\/\/.*$/gm, '');
    expect(code).not.toMatch(/nl_send|nl_recv|\{\{/);
    expect(code).toMatch(/cni_out/);
  });

  it('knows which Go builds pass arguments in registers', () => {
    expect(hasRegisterAbi('go1.17')).toBe(true);
    expect(hasRegisterAbi('go1.19.8')).toBe(true);
    expect(hasRegisterAbi('go1.22rc1')).toBe(true);
    expect(hasRegisterAbi('go1.16.15')).toBe(false);
    expect(hasRegisterAbi('devel +abc')).toBe(false);
  });

  it('refuses a plugin path it would not put into a probe', () => {
    expect(inspectPlugin('/opt/cni/bin/my plugin').unsupported).toMatch(/characters/);
  });
});
