// podwire trace's files and pipes on the real lab: a Jaeger file that opens after a kill -9, and `| head -3` that
// ends the tracer with everything it attached removed.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../src/correlate/record.js';
import { isRoot, noLabUp, podwire, rootReason, running } from './lab/node.js';
import { type Created, childrenOf, endTracedLab, type Trace, tracedLab } from './lab/traced.js';
import type { JaegerTrace } from './otel/traces.js';
import { until } from './until.js';

const uprobeEvents = '/sys/kernel/tracing/uprobe_events';
/** The uprobe event groups of podwire `pid` still registered in tracefs. */
const groupsOf = (pid: number) =>
  readFileSync(uprobeEvents, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith(`p:podwire_${pid}_`));

describe.skipIf(!isRoot)(
  `podwire trace's files and pipes on the lab${isRoot ? '' : ` (skipped: ${rootReason})`}`,
  () => {
    let scratch = '';
    let trace: Trace | undefined;

    beforeAll(async () => {
      await noLabUp();
      scratch = mkdtempSync(join(tmpdir(), 'podwire-pipes-test-'));
    });

    afterAll(async () => {
      if (!scratch) return;
      await endTracedLab(trace, join(scratch, 'run.ndjson'), 'pipes-lab');
      rmSync(scratch, { recursive: true, force: true });
    });

    it('leaves a Jaeger file that parses, one trace per pod, when killed with -9 after some pods', async () => {
      const jaeger = join(scratch, 'killed.jaeger.json');
      trace = await tracedLab([], join(scratch, 'run.ndjson'), ['--jaeger-json', jaeger]);
      const created = await podwire('lab', 'pods', 'create', '--count', '3', '--json');
      expect(created.code, created.stderr).toBe(0);
      const pods = (JSON.parse(created.stdout) as Created).pods;
      await trace.waitFor('3 handshakes', () => trace?.records('handshake').length === 3);
      const children = childrenOf(trace.pid);
      process.kill(trace.pid, 'SIGKILL');
      await trace.exitCode;
      const traces = (JSON.parse(readFileSync(jaeger, 'utf8')) as { data: JaegerTrace[] }).data;
      const podName = (t: JaegerTrace) =>
        t.spans[0]?.tags.find((tag) => tag.key === 'k8s.pod.name')?.value;
      expect(traces.map(podName).sort()).toEqual(pods.map((pod) => pod.name).sort());
      expect(traces.map((t) => t.spans.length)).toEqual(
        trace.records('handshake').map((record: HandshakeRecord) => record.phases.length + 1),
      );
      // Its bpftrace and readers end with it; what it left in tracefs the next podwire (the test below) removes.
      await until(
        'the killed tracer’s children to end',
        () => children.every((c) => !running(c.pid)),
        10_000,
      );
      expect((await podwire('lab', 'pods', 'delete', '--all')).code).toBe(0);
    });

    it('podwire trace | head -3: exits 0 with no stack trace, its uprobe events removed and no process left', async () => {
      // As head does: three lines read, then the pipe's reader closes.
      const child = spawn('node', ['dist/src/cli.js', 'trace'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const pid = child.pid as number;
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      let exited = false;
      const exitCode = new Promise<number | null>((resolve) =>
        child.once('exit', (code) => {
          exited = true;
          resolve(code);
        }),
      );
      // What it attached and started, seen while it runs.
      const seenChildren = new Map<number, string>();
      let sawEvents = false;
      const watch = setInterval(() => {
        for (const c of childrenOf(pid)) seenChildren.set(c.pid, c.comm);
        if (!exited && groupsOf(pid).length > 0) sawEvents = true;
      }, 100);
      try {
        const read: string[] = [];
        for await (const line of createInterface({ input: child.stdout })) {
          read.push(line);
          if (read.length === 3) break;
        }
        child.stdout.destroy();
        const closed = Date.now();
        const code = await Promise.race([
          exitCode,
          new Promise<string>((resolve) =>
            setTimeout(() => resolve('still running after 60 s'), 60_000),
          ),
        ]);
        if (code !== 0) child.kill('SIGKILL');
        expect(code, stderr).toBe(0);
        console.log(
          `podwire trace | head -3: exited ${((Date.now() - closed) / 1000).toFixed(1)} s after the reader closed`,
        );
        expect(read.map((line) => (JSON.parse(line) as { kind: string }).kind)).toEqual([
          'status',
          'status',
          'status',
        ]);
      } finally {
        clearInterval(watch);
      }
      expect(stderr).toBe('');
      expect(sawEvents, 'it had registered its uprobe events').toBe(true);
      // The kernel's part comes after the exit: the janitor removes the CRI probes, bpftrace detaches its own.
      await until('its uprobe events removed', () => groupsOf(pid).length === 0, 15_000);
      expect([...seenChildren.values()]).toContain('bpftrace');
      await until(
        'its children ended',
        () => [...seenChildren].filter(([child]) => running(child)).length === 0,
        15_000,
      );
    }, 120_000);
  },
);
