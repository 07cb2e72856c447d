// Every real recording replays to the records it gave when they were last checked (expected/, written by
// scripts/replay-fixtures.sh): a refactoring that changes what a user sees fails here, line by line.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import type { StatusEvent } from '../../src/events.js';
import { replayFile } from '../../src/recording/replay.js';
import { recordText, type Sink } from '../../src/sinks/ndjson.js';

const dir = fileURLToPath(new URL('../fixtures/recordings/', import.meta.url));
const recordings = readdirSync(dir).filter((name) => name.endsWith('.ndjson'));

/** What `podwire replay FILE --json` prints, as lines. */
async function replayed(file: string): Promise<string[]> {
  const lines: string[] = [];
  const sink: Sink = {
    write: (record: HandshakeRecord | StatusEvent) => lines.push(recordText(record)),
    close: async () => {},
  };
  await replayFile(file, [sink]);
  return lines;
}

describe('replaying every recorded fixture', () => {
  it('has recordings to replay', () => {
    expect(recordings.length).toBeGreaterThanOrEqual(8);
  });

  for (const name of recordings) {
    it(`${name} gives the expected records`, async () => {
      const expected = readFileSync(
        `${dir}expected/${name.replace(/\.ndjson$/, '.records.ndjson')}`,
        'utf8',
      )
        .split('\n')
        .filter((line) => line !== '');
      const actual = await replayed(`${dir}${name}`);
      expect(actual.length).toBe(expected.length);
      for (let i = 0; i < expected.length; i++)
        expect(actual[i], `record ${i + 1}`).toBe(expected[i]);
    });
  }
});
