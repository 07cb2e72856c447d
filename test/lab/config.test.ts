// The lab's generated configuration, checked by the programs that read it: containerd's own parser and the CNI rules.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  checkConflist,
  containerdConfig,
  defaultConflist,
  labBridge,
  parseSubnet,
  pauseImageRef,
  type Subnet,
  subnetsOverlap,
} from '../../src/lab/config.js';
import { labPaths } from '../../src/lab/paths.js';

const scratch = mkdtempSync(join(tmpdir(), 'podwire-config-'));
const paths = labPaths(join(scratch, 'root'), join(scratch, 'state'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const hasContainerd = existsSync('/usr/bin/containerd');
const hasPlugins = existsSync('/usr/lib/cni/bridge');

function subnet(text: string): Subnet {
  const parsed = parseSubnet(text);
  if (typeof parsed === 'string') throw new Error(parsed);
  return parsed;
}

describe.skipIf(!hasContainerd)(
  `containerd config${hasContainerd ? '' : ' (skipped: needs /usr/bin/containerd: npm run setup installs it)'}`,
  () => {
    it('is accepted by containerd and keeps every path inside the lab', () => {
      const file = join(scratch, 'containerd.toml');
      writeFileSync(
        file,
        containerdConfig({
          paths,
          sandboxImage: pauseImageRef,
          cniBinDir: '/usr/lib/cni',
          runcBinary: '/usr/sbin/runc',
        }),
      );
      // `config dump` parses the file with containerd's own loader and prints the merged result.
      const dump = execFileSync('/usr/bin/containerd', ['--config', file, 'config', 'dump'], {
        encoding: 'utf8',
      });
      expect(dump).toMatch(/^version = 2$/m);
      expect(dump).toContain(`root = "${paths.containerdRoot}"`);
      expect(dump).toContain(`state = "${paths.containerdState}"`);
      expect(dump).toContain(`address = "${paths.socket}"`);
      expect(dump).toContain(`address = "${paths.socket}.ttrpc"`);
      expect(dump).toContain(`Root = "${paths.runcRoot}"`);
      expect(dump).toContain(`conf_dir = "${paths.cniConfDir}"`);
      expect(dump).toContain(`sandbox_image = "${pauseImageRef}"`);
      expect(dump).toMatch(/restrict_oom_score_adj = true/);
      expect(dump).toMatch(/disabled_plugins = \[.*"io\.containerd\.internal\.v1\.opt".*\]/);
      // Nothing may point at the machine's own containerd.
      expect(dump).not.toMatch(/"\/var\/lib\/containerd|"\/run\/containerd\/containerd\.sock/);
    });
  },
);

describe('CNI network list', () => {
  it('default: the bridge plugin on the lab bridge as gateway, no masquerade, host-local leases inside the lab', () => {
    const conflist = JSON.parse(defaultConflist(subnet('10.244.77.0/24'), paths));
    expect(conflist.name).toBe('podwire-lab');
    const [bridge] = conflist.plugins;
    expect(bridge).toMatchObject({
      type: 'bridge',
      bridge: labBridge,
      isGateway: true,
      ipMasq: false,
    });
    expect(bridge.ipam).toEqual({
      type: 'host-local',
      ranges: [[{ subnet: '10.244.77.0/24' }]],
      routes: [{ dst: '0.0.0.0/0' }],
      dataDir: paths.ipamDataDir,
    });
  });

  it.skipIf(!hasPlugins)(
    "default passes the lab's own checks and tells what down must remove",
    () => {
      const facts = checkConflist(
        defaultConflist(subnet('10.244.77.0/24'), paths),
        'default',
        '/usr/lib/cni',
      );
      expect(facts).toEqual({
        name: 'podwire-lab',
        pluginTypes: ['bridge'],
        bridges: [labBridge],
        ipamDirs: [join(paths.ipamDataDir, 'podwire-lab')],
        subnets: ['10.244.77.0/24'],
      });
    },
  );

  it.skipIf(!hasPlugins)(
    'a list of reference plugins without a bridge name uses the plugin default cni0 and /var/lib/cni',
    () => {
      const text = JSON.stringify({
        cniVersion: '0.4.0',
        name: 'mynet',
        plugins: [
          { type: 'bridge', ipam: { type: 'host-local', subnet: '10.22.0.0/16' } },
          { type: 'portmap' },
        ],
      });
      expect(checkConflist(text, 'my.conflist', '/usr/lib/cni')).toEqual({
        name: 'mynet',
        pluginTypes: ['bridge', 'portmap'],
        bridges: ['cni0'],
        ipamDirs: ['/var/lib/cni/networks/mynet'],
        subnets: ['10.22.0.0/16'],
      });
    },
  );

  it('refuses broken lists with one line that says what to fix', () => {
    const check = (text: string) =>
      checkConflist(text, 'my.conflist', hasPlugins ? '/usr/lib/cni' : scratch);
    expect(check('{"name":')).toMatch(
      /^my\.conflist is not valid JSON .*: fix it or leave out --cni-config$/,
    );
    expect(check('[]')).toMatch(/is not a JSON object/);
    expect(check('{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}')).toMatch(/has no "name"/);
    expect(check('{"name":"n","plugins":[{"type":"bridge"}]}')).toMatch(/has no "cniVersion"/);
    expect(check('{"name":"n","cniVersion":"1.0.0","type":"bridge"}')).toMatch(
      /has no "plugins" list/,
    );
    expect(check('{"name":"n","cniVersion":"1.0.0","plugins":[{}]}')).toMatch(
      /plugins\[0\] has no "type"/,
    );
    expect(check('{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"../../bin/sh"}]}')).toMatch(
      /plugin "\.\.\/\.\.\/bin\/sh" is not in/,
    );
    expect(
      check(
        '{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"bridge","ipam":{"type":"nope"}}]}',
      ),
    ).toMatch(hasPlugins ? /plugin "nope" is not in \/usr\/lib\/cni/ : /plugin "bridge" is not in/);
  });
});

describe('pod subnet', () => {
  it('parses CIDRs and refuses what host-local would refuse later', () => {
    expect(parseSubnet('10.244.77.0/24')).toMatchObject({ prefix: 24, text: '10.244.77.0/24' });
    expect(parseSubnet('10.244.77.1/24')).toMatch(/host bits set/);
    expect(parseSubnet('10.244.77.0')).toMatch(/not an IPv4 CIDR/);
    expect(parseSubnet('10.244.300.0/24')).toMatch(/not an IPv4 CIDR/);
    expect(parseSubnet('10.0.0.0/31')).toMatch(/at most \/30/);
    expect(parseSubnet('fd00::/64')).toMatch(/not an IPv4 CIDR/);
  });

  it('knows when two subnets overlap', () => {
    expect(subnetsOverlap(subnet('10.244.0.0/16'), subnet('10.244.77.0/24'))).toBe(true);
    expect(subnetsOverlap(subnet('10.244.77.0/24'), subnet('10.244.78.0/24'))).toBe(false);
    expect(subnetsOverlap(subnet('0.0.0.0/0'), subnet('192.0.2.0/24'))).toBe(true);
  });
});
