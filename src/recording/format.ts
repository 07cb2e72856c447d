// The recording format of `podwire trace --record`: a header line, then every raw line the probes gave, in order.
import type { TickMode } from '../correlate/pipeline.js';

/**
 * The format's version: it changes whenever a recorded line or a probe line changes. Recordings of older versions
 * are brought to this one as they are read (upgrade.ts).
 */
export const recordingVersion = 2;

/** The first line of a recording: what replay needs to give the same records as the live run. */
export interface RecordingHeader {
  kind: 'podwire-recording';
  version: number;
  started: string;
  clockOffsetNs: string;
  criProbes: boolean;
  runtime: string | null;
  cniBinDirs: string[];
}

/** A line after the header: what a probe source printed, or what the live run knew at that point. */
export type RecordedLine =
  /** One raw line of a probe source (`src`: "kernel", "cri:/usr/bin/containerd"), as the pipeline got it. */
  | { src: string; raw: string }
  /** A probe source came up (attached), went down, or is gone; `ticks`: how its ticks bound what is unread. */
  | { src: string; probe: 'up' | 'down' | 'gone'; ticks?: TickMode }
  /** CRI probes were attached after the start (a runtime appeared). */
  | { cri: boolean }
  /** The plugins whose I/O is probed in their own code from here on (null: all); others' records are incomplete. */
  | { probedPlugins: string[] | null }
  /** The live run released held events here (input was idle). */
  | { drain: true };
