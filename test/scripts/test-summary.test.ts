// The closing line of npm test counts every failure and names it: fed the reports of real vitest runs over tiny test
// files in a temp dir (a failing beforeAll, an unhandled rejection, a file that does not load, a crash).
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'podwire-summary-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Run {
  code: string;
  report: string;
  output: string;
}

/** vitest, as scripts/test.sh runs it, on these files in a directory of their own. */
function vitest(name: string, files: Record<string, string>, extra: string[] = []): Run {
  const dir = join(scratch, name);
  mkdirSync(dir);
  for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text);
  const report = join(dir, 'report.json');
  const run = spawnSync(
    process.execPath,
    [
      join(repo, 'node_modules/vitest/vitest.mjs'),
      'run',
      '--root',
      dir,
      '--globals',
      '--reporter=default',
      `--reporter=${join(repo, 'scripts/test-report.mjs')}`,
      `--outputFile.json=${report}`,
      ...extra,
    ],
    { encoding: 'utf8', cwd: dir, env: { ...process.env, CI: '1' } },
  );
  return { code: String(run.status), report, output: `${run.stdout}${run.stderr}` };
}

function summary(...args: string[]): { code: number | null; lines: string[] } {
  const run = spawnSync(process.execPath, [join(repo, 'scripts/test-summary.mjs'), ...args], {
    encoding: 'utf8',
  });
  return { code: run.status, lines: run.stdout.trim().split('\n') };
}

const passing = "it('passes', () => {});\n";

describe('the closing line of npm test', () => {
  it('counts a failing beforeAll, an unhandled rejection and a file that does not load, each named', () => {
    const run = vitest('broken', {
      'good.test.ts': `${passing}describe.skipIf(true)('needs a thing (skipped: no thing here)', () => { it('uses it', () => {}); });\n`,
      'hook.test.ts': `describe('needs the lab', () => {
  beforeAll(() => { throw new Error('the lab did not come up'); });
  it('one', () => {});
  it('two', () => {});
});
${passing}`,
      'rejection.test.ts': `it('leaves a promise behind', async () => {
  Promise.reject(new Error('nobody awaits me'));
  await new Promise((resolve) => setTimeout(resolve, 50));
});
`,
      'load.test.ts': "throw new Error('cannot load this file');\n",
    });
    expect(run.code, run.output).toBe('1');
    const result = summary('--vitest', 'tests on Node.js 20', run.code, run.report);
    expect(result.code).toBe(1);
    // The two tests under the failed beforeAll did not run: neither passed nor skipped on purpose.
    expect(result.lines.at(-1)).toBe('tests: 3 passed, 3 failed, 1 skipped');
    const failures = result.lines.filter((line) => line.startsWith('failed: '));
    expect(failures).toHaveLength(3);
    expect(failures).toEqual(
      expect.arrayContaining([
        'failed: tests on Node.js 20: hook.test.ts > needs the lab failed outside its tests (a hook, or the file not loading): the lab did not come up (2 tests did not run)',
        'failed: tests on Node.js 20: unhandled error in rejection.test.ts > leaves a promise behind: Error: nobody awaits me',
        'failed: tests on Node.js 20: load.test.ts failed outside its tests (a hook, or the file not loading): cannot load this file',
      ]),
    );
    expect(result.lines).toContain('skipped because: no thing here');
  }, 60_000);

  it('counts a failing test with its name and message, and a failing afterAll though every test passed', () => {
    const run = vitest('assertion', {
      'a.test.ts': `describe('records', () => { it('are exact', () => { expect(1).toBe(2); }); });\n`,
      'b.test.ts': `afterAll(() => { throw new Error('the lab did not come down'); });\n${passing}`,
    });
    const result = summary('--vitest', 'unit', run.code, run.report);
    expect(result.lines.filter((line) => line.startsWith('failed: '))).toEqual([
      expect.stringMatching(
        /^failed: unit: .*a\.test\.ts > records are exact: .*expected 1 to be 2/,
      ),
      'failed: unit: b.test.ts failed outside its tests (a hook, or the file not loading): the lab did not come down',
    ]);
    expect(result.lines.at(-1)).toBe('tests: 1 passed, 2 failed, 0 skipped');
  }, 60_000);

  it('counts a vitest that crashed before writing its report', () => {
    const run = vitest(
      'crash',
      { 'a.test.ts': passing, 'broken.config.mjs': "throw new Error('config broke');\n" },
      ['--config', 'broken.config.mjs'],
    );
    expect(run.code).not.toBe('0');
    const result = summary('--vitest', 'unit tests on Node.js 22', run.code, run.report);
    expect(result.code).toBe(1);
    expect(result.lines).toEqual([
      `failed: unit tests on Node.js 22: no report at ${run.report}, vitest exited ${run.code}: it crashed or did not run (see its output above)`,
      'tests: 0 passed, 1 failed, 0 skipped',
    ]);
  }, 60_000);

  it('counts lint failing and the Node.js 22 stage not running, besides a run that passed', () => {
    const run = vitest('clean', { 'a.test.ts': passing });
    expect(run.code, run.output).toBe('0');
    const result = summary(
      '--stage',
      'lint (npm run lint)',
      '1',
      '--vitest',
      'tests on Node.js 20',
      run.code,
      run.report,
      '--stage',
      'unit tests on Node.js 22 (could not install Node.js 22: they did not run)',
      '1',
    );
    expect(result.code).toBe(1);
    expect(result.lines).toEqual([
      'failed: lint (npm run lint): exited 1',
      'failed: unit tests on Node.js 22 (could not install Node.js 22: they did not run): exited 1',
      'tests: 1 passed, 2 failed, 0 skipped',
    ]);
    // The same run with every stage passing: the one case that exits 0.
    const clean = summary('--stage', 'lint', '0', '--vitest', 'tests', run.code, run.report);
    expect(clean).toEqual({ code: 0, lines: ['tests: 1 passed, 0 failed, 0 skipped'] });
    // A run that exited non-zero for a reason its report does not hold still fails.
    expect(summary('--vitest', 'tests', '1', run.report).lines).toEqual([
      'failed: tests: vitest exited 1 though its report shows no failure (see its output above)',
      'tests: 1 passed, 1 failed, 0 skipped',
    ]);
  }, 60_000);
});

/**
 * scripts/test.sh with its stages replaced by stubs (npm for lint, npx for vitest, node22.sh and the Node.js 22
 * binary): the real stages take the whole suite and the lab, so the stubs stand in for them to check how test.sh
 * hands each stage's exit code to the summary. The summary itself is the real one.
 */
function testSh(name: string, stubs: { npm: number; npx: number; node22: string }) {
  const dir = join(scratch, name);
  mkdirSync(join(dir, 'scripts'), { recursive: true });
  mkdirSync(join(dir, 'bin'));
  copyFileSync(join(repo, 'scripts/test.sh'), join(dir, 'scripts/test.sh'));
  copyFileSync(join(repo, 'scripts/test-summary.mjs'), join(dir, 'scripts/test-summary.mjs'));
  const stub = (file: string, text: string) =>
    writeFileSync(join(dir, file), `#!/bin/sh\n${text}\n`, { mode: 0o755 });
  stub('bin/npm', `exit ${stubs.npm}`);
  stub('bin/npx', `exit ${stubs.npx}`);
  stub('scripts/fetch-containerd.sh', 'exit 0');
  stub('scripts/fetch-prometheus.sh', 'exit 0');
  // As root test.sh builds the image first: not here.
  stub('scripts/build-image.sh', 'exit 0');
  stub('scripts/node22.sh', stubs.node22);
  stub('bin/node22', 'exit 2');
  const run = spawnSync('bash', [join(dir, 'scripts/test.sh')], {
    encoding: 'utf8',
    env: { ...process.env, PATH: `${join(dir, 'bin')}:${process.env.PATH}` },
  });
  const lines = run.stdout.trim().split('\n');
  return { code: run.status, closing: lines.filter((l) => /^(failed|tests): /.test(l)) };
}

describe('scripts/test.sh', () => {
  it('hands the summary each stage that failed or did not run: lint, a crashed vitest, no Node.js 22', () => {
    const result = testSh('all-failing', { npm: 1, npx: 3, node22: 'exit 1' });
    expect(result.code).toBe(1);
    expect(result.closing).toEqual([
      'failed: lint (npm run lint): exited 1',
      'failed: unit tests on Node.js 22 (scripts/node22.sh could not install Node.js 22: they did not run): exited 1',
      expect.stringMatching(
        /^failed: tests on Node\.js v\d+\.\d+\.\d+: no report at \.cache\/vitest-node20\.json, vitest exited 3: /,
      ),
      'tests: 0 passed, 3 failed, 0 skipped',
    ]);
  });

  it('passes on the exit code of the Node.js 22 run, and of a vitest that exited 0 without a report', () => {
    const result = testSh('node22-crash', { npm: 0, npx: 0, node22: 'echo "$PWD/bin/node22"' });
    expect(result.code).toBe(1);
    expect(result.closing).toEqual([
      expect.stringMatching(
        /^failed: unit tests on Node\.js 22: no report at \.cache\/vitest-node22\.json, vitest exited 2: /,
      ),
      expect.stringMatching(
        /^failed: tests on Node\.js v[\d.]+: no report at .*, vitest exited 0: /,
      ),
      'tests: 0 passed, 2 failed, 0 skipped',
    ]);
  });
});
