// Brings recordings made by older podwire versions to today's format, so that nothing else reads old formats.
import type { RecordedLine, RecordingHeader } from './format.js';

/** A function that upgrades one line of `header`'s recording; it may keep state across the lines, in order. */
export function upgrader(_header: RecordingHeader): (line: RecordedLine) => RecordedLine[] {
  return (line) => [line];
}
