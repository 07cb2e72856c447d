// FifoLines with real child processes writing into the FIFO: lines whole and in order, nothing lost, nothing left.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { busyPollMs, FifoLines } from '../../src/probes/fifo-lines.js';

/** The FIFOs' own directories in the temporary directory (each is removed as soon as both ends are open). */
const fifoDirs = () => readdirSync(tmpdir()).filter((name) => name.startsWith('podwire-fifo-'));

/** Runs `sh -c script` with its stdout into a FifoLines; resolves with the lines once the child has exited. */
function linesOf(script: string): Promise<string[]> {
  const lines: string[] = [];
  const fifo = new FifoLines((line) => lines.push(line));
  const child = spawn('sh', ['-c', script], { stdio: ['ignore', fifo.childEnd, 'inherit'] });
  fifo.childStarted();
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', () => {
      fifo.close();
      resolve(lines);
    });
  });
}

describe('FifoLines', () => {
  it('gives each line once, in order, the last one also without a newline, and leaves no file behind', async () => {
    const before = fifoDirs();
    const lines = await linesOf(
      "printf 'one\\ntwo\\n'; sleep 0.05; printf 'thr'; sleep 0.05; printf 'ee\\nlast'",
    );
    expect(lines).toEqual(['one', 'two', 'three', 'last']);
    expect(fifoDirs()).toEqual(before);
  });

  it('loses nothing when the child writes far more than the FIFO holds between two reads', async () => {
    // ~2.4 MB in one go: the writer blocks on the full FIFO (64 KiB) until the timer empties it, again and again.
    const lines = await linesOf('seq 1 300000 | sed "s/$/ padding to make the line longer/"');
    expect(lines.length).toBe(300_000);
    expect(lines[0]).toBe('1 padding to make the line longer');
    expect(lines[299_999]).toBe('300000 padding to make the line longer');
    expect(lines.every((line, i) => line.startsWith(`${i + 1} `))).toBe(true);
  });

  it('keeps a character whose bytes arrive in two reads whole', async () => {
    // "é" is 0xc3 0xa9: the first byte, a pause long enough for a read in between, then the second.
    const pause = (2 * busyPollMs) / 1000;
    const lines = await linesOf(`printf 'caf\\303'; sleep ${pause}; printf '\\251\\n'`);
    expect(lines).toEqual(['café']);
  });

  it('reads lines while the child still runs, not only at its end', async () => {
    const seen: number[] = [];
    const fifo = new FifoLines(() => seen.push(Date.now()));
    const child = spawn('sh', ['-c', 'echo early; sleep 1; echo late'], {
      stdio: ['ignore', fifo.childEnd, 'inherit'],
    });
    fifo.childStarted();
    const started = Date.now();
    await new Promise((resolve) => child.once('exit', resolve));
    fifo.close();
    expect(seen).toHaveLength(2);
    // Before the child's 1 s sleep ends, with room for a busy machine.
    expect((seen[0] as number) - started).toBeLessThan(900);
  });
});
