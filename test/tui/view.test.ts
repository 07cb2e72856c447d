// The timeline on in-memory streams (startTui's input/output): odd records and a status-only stream draw, keys quit.
import { PassThrough, Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import { startTui, type Tui } from '../../src/tui/index.js';
import { readRecording, replay } from '../correlate/recordings.js';

const recording = readRecording('ten-pods-plugin-uprobes.ndjson');
const records = replay(recording.header, recording.lines);

/** A terminal's two ends: keys typed into `input`, and the text of everything drawn on `output`. */
function terminal() {
  const input = Object.assign(new PassThrough(), {
    isTTY: true,
    isRaw: false,
    setRawMode(raw: boolean) {
      input.isRaw = raw;
      return input;
    },
  });
  let drawn = '';
  const output = Object.assign(
    new Writable({
      write(chunk, _encoding, done) {
        drawn += chunk.toString();
        done();
      },
    }),
    { isTTY: true, columns: 100, rows: 30 },
  );
  // What was drawn, without escape sequences; blessed skips unchanged cells by moving the cursor, so
  // spaces are not reliable: `shows` compares without them.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: escape sequences are what is removed
  const text = () => drawn.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-B]|\x1b[=>]/g, '');
  const shows = (what: string) => text().replace(/\s/g, '').includes(what.replace(/\s/g, ''));
  return { input, output, text, shows };
}

const until = async (what: string, check: () => boolean, text: () => string) => {
  const deadline = Date.now() + 3000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not drawn; the output was:\n${text()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

let tui: Tui | null = null;
afterEach(() => {
  tui?.destroy();
  tui = null;
});

describe('the timeline on in-memory streams', () => {
  it('draws a status-only stream, then odd records, without throwing; q quits', {
    timeout: 20_000,
  }, async () => {
    const screen = terminal();
    tui = startTui({ header: { node: 'node-1', source: 'live' }, ...screen });
    const now = new Date().toISOString();
    tui.sink.write({
      kind: 'status',
      state: 'ready',
      time: now,
      message: 'ready',
      programs: ['a'],
    });
    tui.sink.write({
      kind: 'status',
      state: 'probe-failed',
      time: now,
      message: 'kernel: bpftrace exited; restarting in 1 s',
    });
    await until(
      'the waiting list and the probe status',
      () =>
        screen.text().includes('waiting for pod handshakes') &&
        screen.text().includes('restarting in 1 s'),
      screen.text,
    );

    const [first] = records as [HandshakeRecord];
    const odd: HandshakeRecord[] = [
      {
        ...first,
        pod: { namespace: '', name: '', uid: null },
        sandboxId: null,
        durationMs: Number.NaN,
        phases: first.phases.map((phase) => ({ ...phase, end: null, durationMs: null })),
      },
      {
        ...first,
        pod: { namespace: 'kube-system', name: 'weird-{red-fg}\u001b[2J', uid: null },
        error: { phase: 'cni ADD bridge', message: '{"code":11,"msg":"x"}\nsecond line' },
        outcome: 'failed',
        phases: [],
        deviations: [],
      },
    ];
    for (const record of odd) tui.sink.write(record);
    await until(
      'the odd records listed',
      () => screen.shows('(unknown pod)') && screen.shows('kube-system/weird-'),
      screen.text,
    );
    // Braces in a pod name are text, not blessed tags; the escape in it did not clear the screen.
    expect(screen.shows('weird-{red-fg} [2J')).toBe(true);
    expect(screen.shows('cannot draw')).toBe(false);

    screen.input.write('j');
    screen.input.write('\t');
    screen.input.write('\r');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(screen.shows('cannot draw')).toBe(false);

    let quit = false;
    void tui.quit.then(() => {
      quit = true;
    });
    screen.input.write('q');
    await until('q resolves quit', () => quit, screen.text);
    tui.destroy();
    tui.destroy();
    expect(screen.input.isRaw).toBe(false);
  });
});
