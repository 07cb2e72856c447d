// containerd from other Debian suites (sid's 2.x, trixie's 1.7), which scripts/fetch-containerd.sh (run by npm test)
// unpacks into .cache. A test that needs one and does not find it fails with the reason the script wrote, never
// skips: a run where a suite could not be fetched must not pass as if that version had been checked.
import { existsSync, readFileSync } from 'node:fs';

export type Suite = 'sid' | 'trixie';

const versions: Record<Suite, string> = { sid: 'containerd 2.x', trixie: 'containerd 1.7' };

/** Where scripts/fetch-containerd.sh puts the suite's containerd binary (relative to the repository). */
export function suiteContainerd(suite: Suite): string {
  return `.cache/containerd-${suite}/usr/bin/containerd`;
}

export const sidContainerd = suiteContainerd('sid');
export const trixieContainerd = suiteContainerd('trixie');

/** Why the suite's containerd is not there, as one line with the fix; null when it is. */
export function suiteMissing(suite: Suite): string | null {
  const binary = suiteContainerd(suite);
  if (existsSync(binary)) return null;
  const whyFile = `.cache/containerd-${suite}.missing`;
  const why = existsSync(whyFile)
    ? `scripts/fetch-containerd.sh could not fetch it: ${readFileSync(whyFile, 'utf8').trim()}`
    : 'it was not fetched';
  return `${versions[suite]} from Debian ${suite} is missing (${binary}): ${why}; run bash scripts/fetch-containerd.sh ${suite} (npm test does)`;
}

/** For the beforeAll of every describe that needs the suite's containerd: fails it, with the reason, when missing. */
export function requireSuite(suite: Suite): void {
  const missing = suiteMissing(suite);
  if (missing) throw new Error(missing);
}
