// The timeline over a recording, without the CLI: `node dist/src/tui/replay-main.js FILE [--instant | --speed N]` (its
// tests: at --speed 0.0625 a short recording plays long enough to pause it).
import { hostname } from 'node:os';
import type { HandshakeRecord } from '../correlate/record.js';
import type { StatusEvent } from '../events.js';
import { replayFile } from '../recording/replay.js';
import { startTui } from './index.js';

const args = process.argv.slice(2);
const file = args.find((arg) => !arg.startsWith('--'));
if (!file) {
  process.stderr.write('usage: node dist/src/tui/replay-main.js FILE [--instant | --speed N]\n');
  process.exit(2);
}

const records: HandshakeRecord[] = [];
// What the replay says about the recording itself (a line it skipped) goes to the header, as live statuses do.
const statuses: StatusEvent[] = [];
try {
  await replayFile(file, [
    {
      write: (record) => {
        if (record.kind === 'status') statuses.push(record);
        else records.push(record);
      },
      close: async () => {},
    },
  ]);
} catch (error) {
  process.stderr.write(`podwire: cannot replay ${file}: ${(error as Error).message}\n`);
  process.exit(1);
}

const tui = startTui({
  header: { source: `replay of ${file}`, node: hostname() },
  replay: {
    records,
    instant: args.includes('--instant'),
    speed: Number(args[args.indexOf('--speed') + 1]) || 1,
  },
});
for (const status of statuses) tui.sink.write(status);
await tui.quit;
tui.destroy();
process.exit(0);
