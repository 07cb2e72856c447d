// The benches' small C programs: bench/NAME.c gcc'd into .cache/bench/NAME when missing or older than its source.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export function compiledC(root: string, name: string): string {
  const source = join(root, `bench/${name}.c`);
  const binary = join(root, `.cache/bench/${name}`);
  if (!existsSync(binary) || statSync(binary).mtimeMs < statSync(source).mtimeMs) {
    mkdirSync(join(root, '.cache/bench'), { recursive: true });
    try {
      execFileSync('gcc', ['-O2', '-Wall', '-o', binary, source], { stdio: 'inherit' });
    } catch {
      throw new Error(`cannot compile bench/${name}.c: apt-get install gcc libc6-dev`);
    }
  }
  return binary;
}
