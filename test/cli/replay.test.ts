// `podwire replay FILE | head`: the reader going away ends the replay at once with status 0 and no stack trace, and
// what was replayed until then still reaches the other sinks (the Jaeger file, the collector), as after a SIGINT.
// Runs the built CLI (npm run build first) on a real recording whose output (about 200 kB) overflows a pipe's buffer.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import { readRecording, replay } from '../correlate/recordings.js';
import { startOtlpReceiver } from '../otel/otlp-receiver.js';
import { byTrace, type JaegerTrace } from '../otel/traces.js';

const scratch = mkdtempSync(join(tmpdir(), 'podwire-replay-pipe-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const fixture = 'test/fixtures/recordings/ten-pods.ndjson';

describe('podwire replay FILE | head -3', () => {
  it('ends at once with status 0, flushing what it replayed to the Jaeger file and the collector', async () => {
    const { header, lines } = readRecording('ten-pods.ndjson');
    const records: HandshakeRecord[] = replay(header, lines);
    const collector = await startOtlpReceiver('http/protobuf');
    const jaeger = join(scratch, 'replay.json');
    try {
      const child = spawn(
        'node',
        [
          'dist/src/cli.js',
          'replay',
          fixture,
          '--json',
          '--jaeger-json',
          jaeger,
          '--otlp',
          collector.endpoint,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      // The reader: three lines, then it goes away as head does.
      const read: string[] = [];
      const reader = createInterface({ input: child.stdout });
      for await (const line of reader) {
        read.push(line);
        if (read.length === 3) break;
      }
      child.stdout.destroy();
      const started = Date.now();
      expect(await exited).toBe(0);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(read.map((line) => (JSON.parse(line) as HandshakeRecord).sandboxId)).toEqual(
        records.slice(0, 3).map((record) => record.sandboxId),
      );
      // One plain line (where the traces go), no stack trace.
      expect(stderr.trim().split('\n')).toEqual([
        `podwire replay: traces to ${collector.endpoint}/v1/traces (http/protobuf)`,
      ]);
      // What was replayed reached both other sinks. (Whether it stopped before the end depends on how much of
      // this small file the replay had read when the pipe closed: it may have read all of it.)
      const traces = (JSON.parse(readFileSync(jaeger, 'utf8')) as { data: JaegerTrace[] }).data;
      expect(traces.length).toBeGreaterThanOrEqual(3);
      expect(traces.length).toBeLessThanOrEqual(records.length);
      expect([...byTrace(collector.spans).keys()].sort()).toEqual(
        traces.map((trace) => trace.traceID).sort(),
      );
    } finally {
      await collector.close();
    }
  }, 60_000);
});
