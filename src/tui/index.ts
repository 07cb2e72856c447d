// The live terminal timeline: a Sink the tracer writes to like to NDJSON, drawn as pods, waterfalls and details.
import type { HandshakeRecord } from '../correlate/record.js';
import type { StatusEvent } from '../events.js';
import type { Sink } from '../sinks/ndjson.js';
import { HeaderState, type ReplayState } from './header.js';
import { RecordStore, Timeline } from './model.js';
import { ReplayPlayer } from './player.js';
import { TimelineView } from './view.js';

export type { HeaderInfo } from './header.js';

import type { HeaderInfo } from './header.js';

export interface ReplayControls {
  records: HandshakeRecord[];
  instant: boolean;
  /** The speed the replay starts at (default 1, the recorded pace). */
  speed?: number;
}

export interface TuiOptions {
  header: Partial<HeaderInfo>;
  /**
   * replay mode: the UI plays these records itself at their recorded pace (gaps between record `end` times,
   * capped at 2 s), space pauses/resumes, + / - double/halve the speed, shown in the header; instant loads
   * all at once
   */
  replay?: ReplayControls;
  /** for tests and odd terminals: blessed input/output streams; default process.stdin/stdout */
  input?: NodeJS.ReadableStream;
  output?: NodeJS.WritableStream;
}

export interface Tui {
  /** receives live records and status lines (a Sink: the tracer writes to it like to NDJSON) */
  sink: Sink;
  setHeader(update: Partial<HeaderInfo>): void;
  /** resolves when the user quits (q or C-c) — the caller then stops tracing and calls destroy() */
  quit: Promise<void>;
  /** restores the terminal (leave alternate screen, show cursor); idempotent */
  destroy(): void;
}

/** How many records the list keeps: enough for a busy node's last hour, little enough to stay quick. */
const keptRecords = 2000;

export function startTui(options: TuiOptions): Tui {
  const timeline = new Timeline(new RecordStore(keptRecords));
  const header = new HeaderState(options.header);
  let resolveQuit: () => void = () => undefined;
  const quit = new Promise<void>((resolve) => {
    resolveQuit = resolve;
  });
  const add = (record: HandshakeRecord) => {
    header.record(record);
    timeline.add(record);
  };
  const replay = options.replay;
  const player =
    replay && !replay.instant
      ? new ReplayPlayer(replay.records, (record) => add(record), {
          changed: () => view.requestRender(),
          ...(replay.speed ? { speed: replay.speed } : {}),
        })
      : null;
  const replayState = (): ReplayState | null =>
    replay
      ? {
          speed: player?.speed ?? 1,
          paused: player?.paused ?? false,
          played: player?.played ?? replay.records.length,
          total: replay.records.length,
          instant: replay.instant,
        }
      : null;
  // Loaded before the screen opens: its first frame shows them, not an empty list.
  if (replay?.instant) for (const record of replay.records) add(record);
  const view = new TimelineView({
    timeline,
    header,
    replay: replayState,
    replayKeys: player,
    quit: () => resolveQuit(),
    input: options.input,
    output: options.output,
  });

  player?.start();

  let destroyed = false;
  const sink: Sink = {
    write(record: HandshakeRecord | StatusEvent): void {
      if (destroyed) return;
      if (record.kind === 'status') header.status(record);
      else add(record);
      view.requestRender();
    },
    async close(): Promise<void> {},
  };

  return {
    sink,
    setHeader(update) {
      header.set(update);
      view.requestRender();
    },
    quit,
    destroy() {
      if (destroyed) return;
      destroyed = true;
      player?.stop();
      view.destroy();
    },
  };
}
