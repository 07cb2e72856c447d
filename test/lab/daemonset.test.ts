// The parts of `podwire lab daemonset` that need no lab: the image name CRI resolves, and the CRI log format.
import { describe, expect, it } from 'vitest';
import { criLogContent, normalizedImage } from '../../src/lab/daemonset.js';

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
});
