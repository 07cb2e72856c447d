// containerd as a runtime podwire probes: where it runs, and the CRI source for one of its binaries.
import { runningRuntimes } from '../binaries/discover.js';
import { inspectContainerd } from '../binaries/runtime.js';
import { status } from '../events.js';
import type { RuntimeProbes } from './source.js';
import { UprobeEventsRunner } from './uprobe-events.js';

export const containerd: RuntimeProbes = {
  name: 'containerd',

  running: () => runningRuntimes().map((found) => found.binary),

  /** Reads the binary's Go tables for the CRI handlers; the uprobe events are created when the source starts. */
  async source(binary, name, index, events, say) {
    const inspection = await inspectContainerd(binary);
    if ('error' in inspection) {
      say(
        status(
          'runtime-unsupported',
          `${inspection.error}; tracing goes on without CRI calls for it`,
          { binary },
        ),
      );
      return null;
    }
    say(
      status(
        'runtime-found',
        `containerd ${inspection.version ?? '(unknown version)'} at ${binary}: ${new Set(inspection.points.map((point) => point.method)).size} CRI methods probed`,
        {
          binary,
          version: inspection.version,
          missing: inspection.missing,
        },
      ),
    );
    return new UprobeEventsRunner(name, inspection, events, index);
  },
};
