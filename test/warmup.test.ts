// The JIT warm-up: the real recording through throwaway pipelines, its records made and dropped.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { warmUp } from '../src/warmup.js';
import { readRecording, replay } from './correlate/recordings.js';

const fixture = fileURLToPath(
  new URL('./fixtures/recordings/ten-pods-envs.ndjson', import.meta.url),
);

describe('warmUp', () => {
  it('decodes the whole recording on every pass, with the records a replay of it gives', async () => {
    const recording = readRecording('ten-pods-envs.ndjson');
    const perPass = replay(recording.header, recording.lines).length;
    const result = await warmUp(3, fixture, 100);
    expect(result.skipped).toBeUndefined();
    expect(result.lines).toBe(3 * recording.lines.length);
    expect(result.records).toBe(3 * perPass);
    expect(perPass).toBe(20);
  });

  it('is skipped, saying why, when the recording is not there; tracing does not need it', async () => {
    const result = await warmUp(1, '/nonexistent/warmup.ndjson.gz');
    expect(result).toMatchObject({ lines: 0, records: 0 });
    expect(result.skipped).toMatch(/ENOENT.*warmup\.ndjson\.gz/);
  });

  it('leaves the event loop free between slices', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    await warmUp(2, fixture, 200);
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(5);
  });
});
