// `podwire attach` in a real terminal (tmux) against a daemon's socket: what an SRE sees when attaching, while
// records come, and when the daemon goes away.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttachServer } from '../../src/attach/server.js';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import { type StatusEvent, status } from '../../src/events.js';
import { readRecording, replay } from '../correlate/recordings.js';
import { haveTmux, Tmux } from '../tui/terminal.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const { header, lines } = readRecording('ten-pods-envs.ndjson');
const records: HandshakeRecord[] = replay(header, lines);
/** The header's count of the records listed (the list pane shows as many rows as it has room for). */
const listed = (screen: string) => Number(/listed (\d+)\/\d+/.exec(screen)?.[1] ?? -1);

describe.skipIf(!haveTmux)(
  `podwire attach in a real terminal${haveTmux ? '' : ' (skipped: tmux not installed)'}`,
  () => {
    let tmux: Tmux;
    let scratch: string;

    beforeAll(() => {
      if (!existsSync(join(repo, 'dist/src/cli.js')))
        throw new Error('dist/src/cli.js is missing: the tests run on the build (npm run build)');
      tmux = new Tmux();
      scratch = mkdtempSync(join(tmpdir(), 'podwire-attach-'));
    });

    afterAll(() => {
      tmux?.end();
      rmSync(scratch, { recursive: true, force: true });
    });

    it('shows the backlog and the live records, says when the daemon goes, and stays until q', async () => {
      const started = await AttachServer.start({
        dir: join(scratch, 'podwire'),
        exportState: 'traces to http://collector:4318 (http/protobuf)',
        status: (event) => server.write(event),
      });
      if ('error' in started) throw new Error(started.error);
      const server = started;
      const emit = (line: HandshakeRecord | StatusEvent) => server.write(line);
      emit(
        status('runtime-found', 'containerd 1.6.20 at /usr/bin/containerd', {
          binary: '/usr/bin/containerd',
          version: '1.6.20',
        }),
      );
      emit(status('ready', '2 probe programs attached', { programs: ['kernel', 'cri:x'] }));
      // The first four pods before the viewer attaches: its backlog.
      for (const record of records.slice(0, 4)) emit(record);
      const term = tmux.open(
        'attach',
        `'${process.execPath}' dist/src/cli.js attach --socket ${server.path}`,
        repo,
      );
      let screen = await term.until('the backlog', (s) => listed(s) === 4);
      expect(screen).toContain(`attached to pid ${process.pid}`);
      expect(screen).toContain('runtime containerd 1.6.20');
      expect(screen).toContain('probes 2');
      expect(screen).toContain('export traces to http://collector:4318');
      // The other six handshakes, live.
      for (const record of records.slice(4, 10)) emit(record);
      screen = await term.until('the live records', (s) => listed(s) === 10);
      // Keys work as in podwire trace: the filter for failed pods shows none.
      term.keys('f');
      await term.until('the failed filter', (s) => listed(s) === 0);
      term.keys('f');
      await term.until('the filter off', (s) => listed(s) === 10);
      emit(status('stopped', 'podwire stopped'));
      await server.close();
      screen = await term.until('the daemon gone', (s) =>
        s.includes(`pid ${process.pid} stopped; q quits`),
      );
      expect(listed(screen)).toBe(10);
      expect(screen).toMatch(/default\/lab-\w+ +ok +[\d.]+ ms/);
      term.keys('q');
      await term.until('podwire attach to end', (s) => s.includes('EXITED 0'));
    }, 60_000);
  },
);
