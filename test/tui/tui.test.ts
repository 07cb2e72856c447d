// The real timeline in a real pseudo-terminal (tmux): what an SRE sees and does, key by key, over recordings.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandshakeRecord } from '../../src/correlate/record.js';
import { isLookup } from '../../src/tui/phases.js';
import { readRecording, replay } from '../correlate/recordings.js';
import { haveTmux, Tmux } from './terminal.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const repo = fileURLToPath(new URL('../..', import.meta.url));
const entry = 'dist/src/tui/replay-main.js';
const podRow = /default\/lab-\w+ +(ok|failed) +[\d.]+ ms/g;
const tmux = new Tmux();
/** One tmux session running the timeline over a recording. */
const openReplay = (name: string, recording: string, flags: string, cols = 100, rows = 30) =>
  tmux.open(
    name,
    `'${process.execPath}' ${entry} test/fixtures/recordings/${recording} ${flags}`,
    repo,
    cols,
    rows,
  );

/** The pod rows of the list (the waterfall's and details' labels name the pod differently). */
const listed = (screen: string) => [...screen.matchAll(podRow)].map((match) => match[0]);
const replayState = (screen: string) => {
  const match = /replay (\S+) (playing|paused|done) (\d+)\/(\d+)/.exec(screen);
  return match ? { speed: match[1], state: match[2], played: Number(match[3]) } : null;
};

describe.skipIf(!haveTmux)(
  `the timeline in a real terminal${haveTmux ? '' : ' (skipped: tmux not installed)'}`,
  () => {
    beforeAll(() => {
      if (!existsSync(`${repo}/${entry}`))
        throw new Error(`${entry} is missing: the tests run on the build (npm run build)`);
    });

    afterAll(() => {
      tmux.end();
    });

    it('shows the pods and their waterfalls, moves, filters, opens a phase, resizes and quits', async () => {
      const term = openReplay('instant', 'ipam-exhausted.ndjson', '--instant');
      let screen = await term.until(
        'the five records of the recording',
        (s) => listed(s).length === 5,
      );
      term.expect(
        screen,
        'outcomes ok and failed',
        (s) =>
          listed(s).some((row) => / failed /.test(row)) &&
          listed(s).some((row) => / ok /.test(row)),
      );
      // The newest record is selected: the second pod's teardown, with its CRI calls and plugins.
      term.expect(
        screen,
        'the teardown waterfall',
        (s) =>
          /default\/lab-9lfst · teardown · ok/.test(s) &&
          s.includes('cri StopPodSandbox') &&
          s.includes('cni DEL bridge') &&
          s.includes('veth delete'),
      );

      term.keys('j', 'j');
      screen = await term.until('the failed pod selected', (s) =>
        s.includes('default/lab-h9n5x · handshake · failed'),
      );
      // A failed record opens on where it failed: the IPAM plugin, its message, inside the bridge plugin.
      term.expect(
        screen,
        "the failed pod's phases and the error",
        (s) =>
          s.includes('ipam host-local') &&
          s.includes('bridge attach') &&
          s.includes('no IP addresses available in range set'),
      );
      term.keys('k');
      screen = await term.until('k moves back up', (s) =>
        s.includes('default/lab-6l8v4 · teardown · ok'),
      );
      term.keys('j', 'j');
      screen = await term.until('j moves down to the first pod', (s) =>
        s.includes('default/lab-9lfst · handshake · ok'),
      );
      term.expect(screen, 'its handshake phases', (s) =>
        ['cri RunPodSandbox', 'netns create', 'cni ADD loopback', 'cni ADD bridge'].every((name) =>
          s.includes(name),
        ),
      );
      // By default the lookups are hidden and the calls that serve a step folded into it: the steps in view.
      term.expect(
        screen,
        'the rtnetlink steps, lookups hidden',
        (s) =>
          s.includes('lookups hidden') &&
          ['veth create', 'bridge attach'].every((name) => s.includes(name)) &&
          !s.includes('RTM_GETLINK'),
      );
      // n shows every call: the lookups, and the calls that were folded.
      term.keys('n');
      await term.until(
        'every netlink call shown',
        (s) => s.includes('RTM_GETLINK') && !s.includes('lookups hidden'),
      );
      term.keys('n');
      await term.until(
        'the lookups hidden again',
        (s) => s.includes('lookups hidden') && !s.includes('RTM_GETLINK'),
      );

      term.keys('f');
      screen = await term.until(
        'f: failed only',
        (s) => s.includes('filter: failed only') && listed(s).length === 1,
      );
      term.expect(screen, 'only the failed pod listed', (s) => / failed /.test(listed(s)[0] ?? ''));
      term.keys('f');
      await term.until('f again: all five', (s) => listed(s).length === 5);

      term.keys('/');
      term.type('lab-6l8');
      await term.until('the filter being typed', (s) => s.includes('/lab-6l8'));
      term.keys('Enter');
      screen = await term.until(
        '/ filter applied',
        (s) => s.includes('filter: /lab-6l8') && listed(s).length === 2,
      );
      term.expect(screen, 'both records of lab-6l8v4', (s) =>
        listed(s).every((row) => row.startsWith('default/lab-6l8v4')),
      );
      term.keys('Escape');
      await term.until(
        'Esc clears the filter',
        (s) => listed(s).length === 5 && !s.includes('filter:'),
      );

      // Tab into the waterfall, down to a plugin, Enter: its attributes.
      term.keys('Tab');
      await sleep(200);
      term.keys('j', 'j');
      await sleep(200);
      term.keys('Enter');
      // The details pane, focused, grows: the plugin's CNI environment, then (scrolled) its process.
      await term.until(
        'the details of a CNI plugin phase',
        (s) =>
          /details: cni ADD \w+/.test(s) &&
          s.includes('podwire.cni.command (CNI_COMMAND)') &&
          s.includes('CNI_NETNS') &&
          s.includes('j/k scroll'),
      );
      term.keys('j', 'j', 'j', 'j', 'j', 'j');
      await term.until('the process, further down the details', (s) => s.includes('process.pid'));
      term.keys('Tab');
      await term.until('Tab cycles back to the list', (s) => /details: default\/lab-/.test(s));

      term.keys('?');
      await term.until('the help', (s) => s.includes('podwire timeline: keys'));
      term.keys('?');
      await term.until('the help closed', (s) => !s.includes('podwire timeline: keys'));

      term.resize(80, 24);
      screen = await term.until(
        'the layout at 80×24',
        // Redrawn, not just cut by tmux: the list's frame closes at the 80th column.
        (s) => s.split('\n').some((line) => /^┌─ pods 5.*┐$/.test(line) && line.length === 80),
      );
      term.expect(screen, 'pods, waterfall and keys still readable at 80×24', (s) => {
        const lines = s.replace(/\n$/, '').split('\n');
        return (
          lines.length === 24 &&
          listed(s).length >= 3 &&
          /default\/lab-\w+ · (handshake|teardown) · (ok|failed)/.test(s) &&
          lines.some((line) => line.startsWith('q quit')) &&
          lines.filter((line) => /^┌─ /.test(line)).length === 3
        );
      });

      term.keys('q');
      screen = await term.until('the UI gone and its exit status', (s) => s.includes('EXITED 0'));
      term.expect(
        screen,
        'the terminal back to the shell (alternate screen left)',
        (s) => !s.includes('newest first') && !s.includes('q quit'),
      );
    }, 60_000);

    it('shows every step of the selected handshake without scrolling, at 120×36 and at 80×24', async () => {
      const recording = readRecording('ten-pods-plugin-uprobes.ndjson');
      const records = replay(recording.header, recording.lines);
      const term = openReplay('steps', 'ten-pods-plugin-uprobes.ndjson', '--instant', 120, 36);
      await term.until('the twenty records', (s) => listed(s).length > 0 && s.includes('20/20'));
      // Teardowns hidden: the newest handshake is selected.
      term.keys('t');
      let screen = await term.until('a handshake selected', (s) =>
        /default\/lab-\w+ · handshake · ok/.test(s),
      );
      const pod = /default\/(lab-\w+) · handshake/.exec(screen)?.[1];
      const record = records.find(
        (r) => r.kind === 'handshake' && r.pod?.name === pod,
      ) as HandshakeRecord;
      // The steps, from the record itself: every phase but the lookups and the calls serving a step.
      const steps = record.phases
        .filter((p) => !isLookup(p) && p.name !== 'link up' && !p.name.startsWith('rtnetlink '))
        .map((p) => p.name);
      expect(steps).toEqual(
        expect.arrayContaining([
          'cri RunPodSandbox',
          'netns create',
          'cni ADD loopback',
          'cni ADD bridge',
          'veth create',
          'bridge attach',
          'ipam host-local',
          'addr add',
          'route add',
          'sandbox start',
        ]),
      );
      const waterfall = (s: string) => {
        const lines = s.split('\n');
        const top = lines.findIndex((line) => line.includes(`${pod} · handshake`));
        const bottom = lines.findIndex((line, at) => at > top && line.startsWith('└'));
        return lines.slice(top + 1, bottom);
      };
      const allSteps = (s: string) =>
        steps.every((name) =>
          waterfall(s).some(
            (line) =>
              line.startsWith(`│${name}`) ||
              line.includes(` ${name} `) ||
              line.includes(` ${name}…`),
          ),
        );
      term.expect(screen, 'every step in the waterfall at 120×36', allSteps);
      term.expect(
        screen,
        'rows naming interfaces, not indexes',
        (s) =>
          s.includes(`bridge attach ${record.hostVeth} to ${record.bridge}`) &&
          s.includes(`veth create ${record.podInterface}/${record.hostVeth}`) &&
          s.includes(`addr add ${record.podInterface} ${record.podIP}`) &&
          !s.includes('ifindex'),
      );
      term.keys('n');
      screen = await term.until('n: the lookups and folded calls shown', (s) =>
        s.includes(`RTM_GETLINK ${record.hostVeth}`),
      );
      term.expect(screen, 'the steps past the pane now', (s) => !allSteps(s));
      term.keys('n');
      screen = await term.until(
        'n again: folded',
        (s) => !s.includes('RTM_GETLINK') && allSteps(s),
      );

      // Into the waterfall, down to bridge attach: its details list the calls folded into its row.
      term.keys('Tab');
      await sleep(200);
      term.keys('j', 'j', 'j', 'j');
      screen = await term.until('bridge attach selected', (s) =>
        s.includes('details: bridge attach'),
      );
      term.keys('Enter');
      await term.until(
        'the calls folded into bridge attach, in its details',
        (s) =>
          s.includes('folded into this row (3, n shows each)') &&
          s.includes(`rtnetlink RTM_NEWLINK ${record.bridge}`),
      );
      // n keeps the step selected: the row is the same phase, unfolded.
      term.keys('Tab', 'Tab', 'Tab', 'n');
      await term.until(
        'n: bridge attach still selected, its calls now rows',
        (s) => s.includes('details: bridge attach') && s.includes(`link up ${record.hostVeth}`),
      );
      term.keys('n', 'Escape');
      await term.until('back in the list, folded', (s) => /details: default\/lab-/.test(s));

      term.resize(80, 24);
      screen = await term.until(
        'every step in the waterfall at 80×24',
        (s) =>
          s.split('\n').some((line) => /^┌─ pods .*┐$/.test(line) && line.length === 80) &&
          allSteps(s),
      );
      term.expect(screen, 'at least three pods listed', (s) => listed(s).length >= 3);
      term.keys('q');
      await term.until('the exit status', (s) => s.includes('EXITED 0'));
    }, 60_000);

    it('replays at the recorded pace: records appear over time, space pauses, + speeds up', async () => {
      // From the start at 1/16 of the pace: the 1.4 s recording takes 20 s, time enough to look at it (on a busy
      // machine four presses of - could come after it had ended).
      const term = openReplay('paced', 'ten-pods-plugin-uprobes.ndjson', '--speed 0.0625');
      let screen = await term.until('the speed at 1/16', (s) => replayState(s)?.speed === '1/16×');
      const first = replayState(screen)?.played ?? 0;
      term.expect(screen, 'not all records at once', () => first < 20);

      term.keys('Space');
      screen = await term.until('paused', (s) => replayState(s)?.state === 'paused');
      const paused = replayState(screen)?.played ?? -1;
      const pausedRows = listed(screen).length;
      await sleep(1500);
      screen = term.screen();
      term.expect(
        screen,
        'nothing played while paused',
        (s) => replayState(s)?.played === paused && listed(s).length === pausedRows,
      );

      term.keys('Space');
      await term.until('playing again', (s) => replayState(s)?.state === 'playing');
      for (let i = 0; i < 10; i++) term.keys('+');
      screen = await term.until(
        'every record played',
        (s) => replayState(s)?.state === 'done' && replayState(s)?.played === 20,
      );
      term.expect(
        screen,
        'records that arrived after the pause are listed',
        (s) => s.includes('listed 20/20') && listed(s).length > 0,
      );
      term.keys('q');
      await term.until('the exit status', (s) => s.includes('EXITED 0'));
    }, 60_000);
  },
);
