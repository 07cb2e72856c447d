// The podwire of the lab's DaemonSet pod, as the lab tests look at it from the node: what it wrote, and its pid.
import { readdirSync, readFileSync } from 'node:fs';
import { podwire } from './node.js';

/** What the DaemonSet's podwire wrote to stdout so far, parsed. */
export async function daemonSetLines(): Promise<Record<string, unknown>[]> {
  const logs = await podwire('lab', 'daemonset', 'logs');
  if (logs.code !== 0) throw new Error(`lab daemonset logs failed: ${logs.stderr}`);
  return logs.stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** The podwire daemons running in the DaemonSet's container, seen from the node (hostPID). */
export function podwireInPod(): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        // The image's entrypoint: node /usr/local/bin/podwire trace ...
        const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
        return argv[1] === '/usr/local/bin/podwire' && argv[2] === 'trace';
      } catch {
        return false;
      }
    })
    .map(Number);
}
