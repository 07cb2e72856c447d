// The parts of `podwire lab daemonset` that need no lab: the image name CRI resolves, and the CRI log format.
import { describe, expect, it } from 'vitest';
import { manifestDir } from '../../src/deploy/manifests.js';
import { criLogContent, daemonSetFromManifest, normalizedImage } from '../../src/lab/daemonset.js';
import { criPod } from '../../src/lab/pod-template.js';

describe('lab daemonset', () => {
  it('names the image as containerd resolves a manifest image', () => {
    expect(normalizedImage('podwire:0.1.0')).toBe('docker.io/library/podwire:0.1.0');
    expect(normalizedImage('podwire')).toBe('docker.io/library/podwire:latest');
    expect(normalizedImage('acme/podwire:1')).toBe('docker.io/acme/podwire:1');
    expect(normalizedImage('ghcr.io/acme/podwire:1')).toBe('ghcr.io/acme/podwire:1');
    expect(normalizedImage('localhost:5000/podwire:1')).toBe('localhost:5000/podwire:1');
    expect(normalizedImage('localhost/podwire:1')).toBe('localhost/podwire:1');
  });

  it('reads what a container wrote from its CRI log, partial lines joined, streams apart', () => {
    const log = [
      '2026-12-08T00:00:00.000000001Z stdout F {"kind":"status","state":"ready"}',
      '2026-12-08T00:00:00.000000002Z stderr F podwire: probes attached',
      '2026-12-08T00:00:00.000000003Z stdout P {"kind":"handshake",',
      '2026-12-08T00:00:00.000000004Z stderr P half ',
      '2026-12-08T00:00:00.000000005Z stdout F "outcome":"ok"}',
      '2026-12-08T00:00:00.000000006Z stderr F a line',
      '',
    ].join('\n');
    expect(criLogContent(log)).toEqual([
      { stream: 'stdout', line: '{"kind":"status","state":"ready"}' },
      { stream: 'stderr', line: 'podwire: probes attached' },
      { stream: 'stdout', line: '{"kind":"handshake","outcome":"ok"}' },
      { stream: 'stderr', line: 'half a line' },
    ]);
  });

  it('reads the DaemonSet of deploy/kubernetes and its overlay into CRI requests the lab can send', () => {
    const identity = {
      name: 'podwire-lab',
      namespace: 'podwire',
      uid: 'u',
      nodeName: 'n',
      hostIp: '127.0.0.1',
      logDirectory: '/l',
      cgroupParent: '/c',
      emptyDirRoot: '/e',
    };
    const base = daemonSetFromManifest(manifestDir('base'));
    expect(base).toMatchObject({ name: 'podwire', namespace: 'podwire' });
    expect(base.graceSeconds).toBe(base.template.spec.terminationGracePeriodSeconds);
    const manifestContainer = base.template.spec.containers[0];
    const [container] = criPod(base.template, identity).containers;
    expect(container?.linux?.securityContext?.capabilities).toEqual({
      addCapabilities: manifestContainer?.securityContext?.capabilities?.add,
      dropCapabilities: ['ALL'],
    });
    expect(container?.args).toEqual(manifestContainer?.args);
    const privileged = criPod(daemonSetFromManifest(manifestDir('privileged')).template, identity);
    expect(privileged.sandbox.linux?.securityContext?.privileged).toBe(true);
    expect(privileged.containers[0]?.linux?.securityContext?.privileged).toBe(true);
  });
});
