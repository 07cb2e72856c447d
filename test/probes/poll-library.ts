// The bpftrace-poll library compiled from this checkout's source, for tests run from src/ (npm run build puts the
// daemon's copy in dist/): once per test file, removed by its afterAll.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { onPath } from '../../src/probes/tied.js';

const source = fileURLToPath(new URL('../../src/probes/bpftrace-poll.c', import.meta.url));
const dir = fileURLToPath(new URL('../../.cache/test/', import.meta.url));

/** The library's path, or why it cannot be built here (no C compiler). */
export function compilePollLibrary(): { path: string; remove: () => void } | { why: string } {
  const cc = onPath('cc') ?? onPath('gcc');
  if (!cc) return { why: 'needs a C compiler: apt-get install gcc libc6-dev' };
  mkdirSync(dir, { recursive: true });
  const path = `${dir}bpftrace-poll-${process.pid}.so`;
  execFileSync(cc, ['-O2', '-Wall', '-shared', '-fPIC', '-o', path, source, '-ldl']);
  return { path, remove: () => rmSync(path, { force: true }) };
}
