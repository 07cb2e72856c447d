// Which CNI plugins podwire probes: the types the runtime's network configs name, read from containerd's config.
// The configs are the real ones: the lab's (src/lab/config.ts), containerd's own `config default` of 1.6 (Debian)
// and 2.x (Debian sid), Debian's /etc/containerd/config.toml. Corner cases are small hand-written ones, said so.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  choosePlugins,
  configPathOf,
  containerdCni,
  pluginTypesOf,
  readToml,
  runtimePluginTypes,
} from '../../src/binaries/cni-config.js';
import { pluginFingerprint, surveyPlugins } from '../../src/binaries/plugins.js';
import { cniBinDir, containerdConfig, defaultConflist, parseSubnet } from '../../src/lab/config.js';
import { labPaths } from '../../src/lab/paths.js';
import { requireSuite, sidContainerd } from './suites.js';

const scratch = mkdtempSync(join(tmpdir(), 'podwire-cni-config-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const paths = labPaths('/var/lib/podwire-lab', '/run/podwire-lab');
const labToml = containerdConfig({
  paths,
  sandboxImage: 'localhost/podwire/pause:lab',
  cniBinDir,
  runcBinary: '/usr/sbin/runc',
});
const labConflist = defaultConflist(parseSubnet('10.244.77.0/24') as never, paths);

/** A node's files under `root`, as the runtime sees them: what runtimePluginTypes reads. */
function nodeFiles(root: string, files: Record<string, string>) {
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  const read = (path: string) => {
    try {
      return readFileSync(join(root, path), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
  };
  return { read, list: (dir: string) => readdirSync(join(root, dir)) };
}

describe('the lab node: containerd 1.6 config version 2 and its default network', () => {
  it("finds the lab's conf dir and bin dir in the CRI plugin's cni table", () => {
    expect(containerdCni(labToml, paths.containerdConfig)).toEqual({
      config: paths.containerdConfig,
      confDirs: [paths.cniConfDir],
      binDirs: ['/usr/lib/cni'],
    });
  });

  it('reads the plugin types of its network list, and of the tiny-range list a test brings up', () => {
    expect(pluginTypesOf(labConflist, '10-podwire-lab.conflist')).toEqual(['bridge', 'host-local']);
    const tiny = readFileSync('test/lab/fixtures/tiny-range.conflist', 'utf8');
    expect(pluginTypesOf(tiny, 'tiny.conflist')).toEqual(['bridge', 'host-local']);
  });

  it('from the command line `containerd --config FILE`: bridge, host-local and loopback', () => {
    const node = nodeFiles(join(scratch, 'lab'), {
      [paths.containerdConfig]: labToml,
      [join(paths.cniConfDir, '10-podwire-lab.conflist')]: labConflist,
    });
    expect(runtimePluginTypes(['--config', paths.containerdConfig], node.read, node.list)).toEqual({
      types: ['bridge', 'host-local', 'loopback'],
      configs: [join(paths.cniConfDir, '10-podwire-lab.conflist')],
      confDirs: [paths.cniConfDir],
    });
  });
});

describe('containerd as distributed', () => {
  it("reads Debian 12's /etc/containerd/config.toml (copied from containerd 1.6.20's package)", () => {
    const debian = `version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
`;
    expect(containerdCni(debian, '/etc/containerd/config.toml')).toMatchObject({
      confDirs: ['/etc/cni/net.d'],
      binDirs: ['/usr/lib/cni'],
    });
  });

  it('reads `containerd config default` of 1.6 (config version 2)', () => {
    const text = execFileSync('/usr/bin/containerd', ['config', 'default'], { encoding: 'utf8' });
    expect(readToml(text)).toBeInstanceOf(Map);
    expect(containerdCni(text, 'default')).toEqual({
      config: 'default',
      confDirs: ['/etc/cni/net.d'],
      binDirs: ['/opt/cni/bin'],
    });
  });

  describe('containerd 2.x from Debian sid', () => {
    beforeAll(() => requireSuite('sid'));
    it("reads its `config default` (version 3, plugins.'io.containerd.cri.v1.runtime'.cni, bin_dirs)", () => {
      const text = execFileSync(sidContainerd, ['config', 'default'], { encoding: 'utf8' });
      expect(containerdCni(text, 'default')).toEqual({
        config: 'default',
        confDirs: ['/etc/cni/net.d'],
        binDirs: ['/usr/lib/cni', '/opt/cni/bin'],
      });
    });
  });

  it('runs on its defaults without a config file: /etc/cni/net.d', () => {
    const node = nodeFiles(join(scratch, 'no-config'), {
      '/etc/cni/net.d/10-a.conf': labConflist,
    });
    expect(runtimePluginTypes([], node.read, node.list)).toMatchObject({
      types: ['bridge', 'host-local', 'loopback'],
    });
  });
});

describe('hand-written corner cases', () => {
  it('takes --config=FILE, -c FILE and -c=FILE; the default otherwise', () => {
    expect(configPathOf(['--config=/a.toml'])).toBe('/a.toml');
    expect(configPathOf(['--log-level', 'debug', '-c', '/b.toml'])).toBe('/b.toml');
    expect(configPathOf(['-c=/c.toml'])).toBe('/c.toml');
    expect(configPathOf(['--log-level', 'debug'])).toBe('/etc/containerd/config.toml');
  });

  it("reads containerd 2.x's own shape with a runtime handler's cni_conf_dir, dotted keys and literal strings", () => {
    const text = `version = 3
[plugins.'io.containerd.cri.v1.runtime']
  cni.conf_dir = '/etc/cni/main'   # a comment
  cni.bin_dirs = [
    '/opt/cni/bin', # first
    "/usr/lib/cni",
  ]
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.kata]
  cni_conf_dir = "/etc/cni/kata"
  options = { Foo = "bar", n = 1 }
`;
    expect(containerdCni(text, 'x')).toEqual({
      config: 'x',
      confDirs: ['/etc/cni/main', '/etc/cni/kata'],
      binDirs: ['/opt/cni/bin', '/usr/lib/cni'],
    });
  });

  it('reads the oldest shape (no version: plugins.cri)', () => {
    expect(containerdCni('[plugins.cri.cni]\nconf_dir = "/etc/cni/old"\n', 'x')).toMatchObject({
      confDirs: ['/etc/cni/old'],
    });
  });

  it('says why it cannot tell: imports, an unknown version, TOML it cannot read', () => {
    expect(containerdCni('imports = ["/etc/containerd/conf.d/*.toml"]\nversion = 2\n', 'x')).toBe(
      'x imports other files, which podwire does not read',
    );
    expect(containerdCni('version = 4\n', 'x')).toBe(
      'x has config version 4, which podwire does not know',
    );
    expect(containerdCni('[plugins\nfoo = 1\n', 'x')).toMatch(/^x is not TOML podwire can read/);
    expect(containerdCni('a = "b" c = 1\n', 'x')).toMatch(/more after a value/);
  });

  it('reads a .conf (one plugin) with its ipam', () => {
    const conf =
      '{"cniVersion":"0.4.0","name":"n","type":"macvlan","master":"eth0","ipam":{"type":"dhcp"}}';
    expect(pluginTypesOf(conf, 'a.conf')).toEqual(['macvlan', 'dhcp']);
  });

  it('reads a chained list: every plugin and its ipam', () => {
    const list = JSON.stringify({
      name: 'n',
      plugins: [{ type: 'ptp', ipam: { type: 'static' } }, { type: 'portmap' }, { type: 'tuning' }],
    });
    expect(pluginTypesOf(list, 'a.conflist')).toEqual(['ptp', 'static', 'portmap', 'tuning']);
  });

  it('refuses to guess for meta plugins and delegates, bad JSON, a plugin without type', () => {
    expect(pluginTypesOf('{"name":"m","type":"multus","delegates":[]}', 'm.conf')).toBe(
      'm.conf: multus runs other plugins from configs of its own',
    );
    expect(
      pluginTypesOf(
        '{"name":"f","plugins":[{"type":"x","delegate":{"type":"bridge"}}]}',
        'f.conflist',
      ),
    ).toBe('f.conflist: plugins[0]: x delegates to plugins its own config names');
    expect(pluginTypesOf('{', 'b.conf')).toMatch(/^b\.conf is not JSON/);
    expect(pluginTypesOf('{"plugins":[{}]}', 'c.conflist')).toBe(
      'c.conflist: plugins[0] has no "type"',
    );
    expect(pluginTypesOf('{"type":"../x"}', 'd.conf')).toBe(
      'd.conf: plugin type "../x" is not a file name',
    );
  });

  it('a missing conf dir is no network (loopback only); an unreadable config is a reason', () => {
    const node = nodeFiles(join(scratch, 'no-conf-dir'), { '/c.toml': 'version = 2\n' });
    expect(runtimePluginTypes(['-c', '/c.toml'], node.read, node.list)).toMatchObject({
      types: ['loopback'],
      configs: [],
    });
    const broken = nodeFiles(join(scratch, 'broken'), {
      '/c.toml': 'version = 2\n',
      '/etc/cni/net.d/10-x.conflist': '{ not json',
      '/etc/cni/net.d/README': 'not a config: ignored',
    });
    expect(runtimePluginTypes(['-c', '/c.toml'], broken.read, broken.list)).toMatch(
      /^\/etc\/cni\/net\.d\/10-x\.conflist is not JSON/,
    );
  });

  it("reads a running process's --config from /proc/<pid>/cmdline, and its conf dir (a node stand-in for containerd)", async () => {
    const dir = join(scratch, 'running');
    const confDir = join(dir, 'net.d');
    mkdirSync(confDir, { recursive: true });
    writeFileSync(
      join(dir, 'c.toml'),
      `version = 2\n[plugins."io.containerd.grpc.v1.cri".cni]\nconf_dir = "${confDir}"\n`,
    );
    writeFileSync(join(confDir, '10-lab.conflist'), labConflist);
    const child = spawn(process.execPath, [
      '-e',
      'setTimeout(() => {}, 30000)',
      '--',
      '--config',
      join(dir, 'c.toml'),
    ]);
    try {
      await new Promise((resolve) => child.once('spawn', resolve));
      expect(choosePlugins([], [{ pid: child.pid as number, binary: 'stand-in' }])).toEqual({
        types: ['bridge', 'host-local', 'loopback'],
        configs: [join(confDir, '10-lab.conflist')],
        confDirs: [confDir],
      });
    } finally {
      child.kill();
    }
  });

  it('probes every plugin when no containerd runs from the binaries named', () => {
    expect(choosePlugins(['/nowhere/containerd'], [])).toEqual({
      all: 'no containerd runs from /nowhere/containerd, so its CNI configs cannot be read',
      noRuntime: true,
      confDirs: [],
    });
  });
});

describe('the plugins surveyed for a choice (Debian plugins in a dir of the test own)', () => {
  const dir = join(scratch, 'bin');
  beforeAll(() => {
    mkdirSync(dir, { recursive: true });
    for (const name of ['bridge', 'host-local', 'loopback', 'macvlan'])
      writeFileSync(join(dir, name), readFileSync(join('/usr/lib/cni', name)), { mode: 0o755 });
  });

  it('surveys only the plugins the configs name', () => {
    const survey = surveyPlugins([dir], false, {
      types: ['bridge', 'host-local', 'loopback'],
      configs: [],
      confDirs: [],
    });
    expect(survey.plugins.map((p) => basename(p.path))).toEqual([
      'bridge',
      'host-local',
      'loopback',
    ]);
    expect(survey.types).toEqual(['bridge', 'host-local', 'loopback']);
    expect(survey.allBecause).toBeNull();
    expect(survey.mode).toBe('uprobes');
  });

  it('surveys every plugin, and says why, when a named type is not in the dirs or the choice gave up', () => {
    const missing = surveyPlugins([dir], false, { types: ['ptp'], configs: [], confDirs: [] });
    expect(missing.plugins).toHaveLength(4);
    expect(missing.allBecause).toBe(
      'the CNI configs name ptp, not found in the CNI bin dirs podwire watches',
    );
    const gaveUp = surveyPlugins([dir], false, { all: 'no containerd runs', confDirs: [] });
    expect(gaveUp.plugins).toHaveLength(4);
    expect(gaveUp.allBecause).toBe('no containerd runs');
  });

  it('changes its fingerprint when the configs name other types', () => {
    const one = { types: ['bridge', 'loopback'], configs: [], confDirs: [] };
    const two = { types: ['bridge', 'host-local', 'loopback'], configs: [], confDirs: [] };
    expect(pluginFingerprint([dir], one)).toBe(surveyPlugins([dir], false, one).fingerprint);
    expect(pluginFingerprint([dir], one)).not.toBe(pluginFingerprint([dir], two));
  });
});
