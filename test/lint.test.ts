// npm run lint refuses an import cycle, type-only imports included: the folders stay a one-way data flow.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const repo = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'podwire-lint-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** biome with the repository's own configuration, on files in a directory of their own. */
function lint(files: Record<string, string>): { status: number | null; output: string } {
  copyFileSync(join(repo, 'biome.json'), join(dir, 'biome.json'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const run = spawnSync(join(repo, 'node_modules/.bin/biome'), ['lint', '.'], {
    cwd: dir,
    encoding: 'utf8',
  });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe('the import-cycle rule of npm run lint', () => {
  it('fails on two modules that import each other through a type', () => {
    const result = lint({
      'record.ts': "import type { Sink } from './sink.js';\nexport type Record = { sink: Sink };\n",
      'sink.ts':
        "import type { Record } from './record.js';\nexport type Sink = (r: Record) => void;\n",
    });
    expect(result.status).not.toBe(0);
    expect(result.output).toMatch(/noImportCycles/);
  });

  it('passes the same modules when the data flows one way', () => {
    const result = lint({
      'record.ts': 'export type Record = { id: number };\n',
      'sink.ts':
        "import type { Record } from './record.js';\nexport type Sink = (r: Record) => void;\n",
    });
    expect(result.output).not.toMatch(/noImportCycles/);
    expect(result.status).toBe(0);
  });
});
