// containerd 2.x from Debian sid, which scripts/fetch-containerd-sid.sh (run by npm test) unpacks into .cache.
// A test that needs it and does not find it fails with the reason the script wrote, never skips: a run where sid
// could not be fetched must not pass as if 2.x had been checked.
import { existsSync, readFileSync } from 'node:fs';

export const sidContainerd = '.cache/containerd-sid/usr/bin/containerd';
const whyFile = '.cache/containerd-sid.missing';

/** Why containerd 2.x is not there, as one line with the fix; null when it is. */
export function sidMissing(): string | null {
  if (existsSync(sidContainerd)) return null;
  const why = existsSync(whyFile)
    ? `scripts/fetch-containerd-sid.sh could not fetch it: ${readFileSync(whyFile, 'utf8').trim()}`
    : 'it was not fetched';
  return `containerd 2.x from Debian sid is missing (${sidContainerd}): ${why}; run bash scripts/fetch-containerd-sid.sh (npm test does)`;
}

/** For the beforeAll of every describe that needs containerd 2.x: fails it, with the reason, when it is missing. */
export function requireSid(): void {
  const missing = sidMissing();
  if (missing) throw new Error(missing);
}
