// The recording format of `podwire trace --record`: what replay needs to give the same records as the live run.

/** The first line of a recording: what replay needs to give the same records as the live run. */
export interface RecordingHeader {
  kind: 'podwire-recording';
  version: 1;
  started: string;
  clockOffsetNs: string;
  criProbes: boolean;
  runtime: string | null;
  cniBinDirs: string[];
}
