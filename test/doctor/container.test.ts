// How podwire tells what a container withholds from it, read from real processes: one started without a
// capability (setpriv), one in a PID namespace of its own (unshare), and this one.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  capabilityFix,
  containerChecks,
  effectiveCapabilities,
  manifestLine,
  seesNodeProcesses,
} from '../../src/doctor/container.js';
import { isRoot, rootReason } from '../lab/node.js';

const ownStatus = readFileSync('/proc/self/status', 'utf8');
/** /proc/self/status of a process started without `capability` in its bounding set. */
const statusWithout = (capability: string) =>
  execFileSync(
    'setpriv',
    [
      `--bounding-set=-${capability}`,
      `--inh-caps=-${capability}`,
      '--',
      'cat',
      '/proc/self/status',
    ],
    { encoding: 'utf8' },
  );

describe('the manifest lines podwire names', () => {
  const lines = readFileSync('deploy/kubernetes/daemonset.yaml', 'utf8').split('\n');
  const lineOf = (reference: string | null) => {
    const number = Number(reference?.split(':')[1]);
    return lines[number - 1]?.trim();
  };

  it('points at the line that grants each capability, hostPID and the tracefs mount', () => {
    expect(lineOf(manifestLine('SYS_ADMIN'))).toBe('- SYS_ADMIN');
    expect(lineOf(manifestLine('SYS_PTRACE'))).toBe('- SYS_PTRACE');
    expect(lineOf(manifestLine('hostPID'))).toBe('hostPID: true');
    expect(lineOf(manifestLine('tracefs'))).toBe('- name: tracefs');
    expect(lineOf(manifestLine('run'))).toBe('- name: run');
  });

  it('says nothing of a line a manifest does not have', () => {
    expect(manifestLine('SYS_PTRACE', 'add:\n  - SYS_ADMIN\n')).toBeNull();
    expect(capabilityFix('SYS_PTRACE')).toMatch(
      /^in a pod add SYS_PTRACE to the container's securityContext.capabilities.add \(deploy\/kubernetes\/daemonset.yaml:\d+\); on a node/,
    );
  });
});

describe.skipIf(!isRoot)(
  `what a process holds, read from /proc${isRoot ? '' : ` (skipped: ${rootReason})`}`,
  () => {
    it('root on the node holds every capability podwire needs, in the node PID namespace', () => {
      const effective = effectiveCapabilities(ownStatus);
      expect(effective.has('SYS_ADMIN')).toBe(true);
      expect(effective.has('SYS_PTRACE')).toBe(true);
      const pid2Status = readFileSync('/proc/2/status', 'utf8');
      expect(seesNodeProcesses(pid2Status)).toBe(true);
      const checks = containerChecks({ status: ownStatus, pid2Status, runDirWritable: true });
      expect(checks.map((check) => [check.name, check.status])).toEqual([
        ['capabilities', 'ok'],
        ['host PID', 'ok'],
        ['live view', 'ok'],
      ]);
    });

    it('a process started without SYS_PTRACE lacks it and keeps SYS_ADMIN; doctor names the fix', () => {
      const status = statusWithout('sys_ptrace');
      const effective = effectiveCapabilities(status);
      expect(effective.has('SYS_PTRACE')).toBe(false);
      expect(effective.has('SYS_ADMIN')).toBe(true);
      const [capabilities] = containerChecks({ status, pid2Status: null, runDirWritable: true });
      expect(capabilities).toMatchObject({ name: 'capabilities', status: 'missing' });
      expect(capabilities?.detail).toMatch(/^no SYS_PTRACE: /);
      expect(capabilities?.fix).toBe(capabilityFix('SYS_PTRACE'));
    });

    it('a process in a PID namespace of its own (its /proc mounted there) is told to take hostPID', () => {
      // What pid 2 is there: the sleep after the shell, not kthreadd (it ends with the shell, the namespace's init).
      const pid2Status = execFileSync(
        'unshare',
        ['--pid', '--fork', '--mount-proc', 'sh', '-c', 'sleep 10 & cat /proc/2/status'],
        { encoding: 'utf8' },
      );
      expect(pid2Status).toMatch(/^Name:/);
      expect(seesNodeProcesses(pid2Status)).toBe(false);
      expect(seesNodeProcesses(null)).toBe(false);
      const hostPid = containerChecks({ status: ownStatus, pid2Status, runDirWritable: true }).find(
        (check) => check.name === 'host PID',
      );
      expect(hostPid).toMatchObject({ status: 'missing' });
      expect(hostPid?.fix).toMatch(/hostPID: true \(deploy\/kubernetes\/daemonset.yaml:\d+\)/);
    });
  },
);
