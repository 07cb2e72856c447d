// Where podwire's own files are: next to package.json, whether it runs from src/ (tests), dist/src/ (a build) or
// /opt/podwire/dist/src/ (the image).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The path of `relative` (e.g. 'probes/cni.bt') in podwire's install, or null when the install has none. */
export function installFile(relative: string): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const path = join(dir, relative);
    if (existsSync(path)) return path;
    dir = dirname(dir);
  }
  return null;
}
