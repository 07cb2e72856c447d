// The closing line of npm test, "tests: N passed, N failed, N skipped", with every failure of the run named above it.
// Usage: node scripts/test-summary.mjs [--stage NAME EXIT_CODE]... [--vitest NAME EXIT_CODE REPORT]...
//   --stage: a step that is not vitest (lint, installing Node.js 22); a non-zero exit code is one failure.
//   --vitest: a vitest run, its exit code and the JSON report of scripts/test-report.mjs. Counted as failures: each
//   failed test, each test file or describe that failed outside its tests (a beforeAll, an afterAll, a file that does
//   not load), each unhandled error, a run that was interrupted, a report that is missing or unreadable (vitest
//   crashed), and a non-zero exit code whose report shows none of these.
// Tests that did not run because their beforeAll failed are not counted as skipped: their failure says so.
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

const firstLine = (text) => String(text ?? '').split('\n')[0] ?? '';

let passed = 0;
let failed = 0;
let skipped = 0;
const failures = [];
const reasons = new Set();

function fail(line) {
  failed++;
  failures.push(line);
}

function readReport(name, code, file) {
  let report;
  try {
    report = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    const why = error.code === 'ENOENT' ? 'no report' : `an unreadable report (${error.message})`;
    fail(
      `${name}: ${why} at ${file}, vitest exited ${code}: it crashed or did not run (see its output above)`,
    );
    return;
  }
  const before = failed;
  passed += report.numPassedTests ?? 0;
  let notRun = 0;
  for (const suite of report.testResults ?? []) {
    for (const test of suite.assertionResults ?? []) {
      if (test.status === 'failed')
        fail(
          `${name}: ${relative(process.cwd(), suite.name)} > ${test.fullName}: ${firstLine(test.failureMessages?.[0])}`,
        );
      const reason = /\(skipped: (.+)\)/.exec(test.ancestorTitles?.join(' ') ?? '');
      if (test.status !== 'passed' && reason) reasons.add(reason[1]);
    }
  }
  if (!Array.isArray(report.failedSuites))
    fail(
      `${name}: ${file} is not a report of scripts/test-report.mjs (no failedSuites): pass --reporter=./scripts/test-report.mjs`,
    );
  for (const suite of report.failedSuites ?? []) {
    notRun += suite.testsNotRun ?? 0;
    const where = suite.suite ? `${suite.file} > ${suite.suite}` : suite.file;
    const lost = suite.testsNotRun
      ? ` (${suite.testsNotRun} test${suite.testsNotRun === 1 ? '' : 's'} did not run)`
      : '';
    fail(
      `${name}: ${where} failed outside its tests (a hook, or the file not loading): ${suite.message}${lost}`,
    );
  }
  for (const error of report.unhandledErrors ?? []) {
    const where = [error.file, error.test].filter(Boolean).join(' > ');
    fail(`${name}: unhandled error${where ? ` in ${where}` : ''}: ${error.message}`);
  }
  if (report.endReason === 'interrupted') fail(`${name}: the run was interrupted before its end`);
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0) - notRun;
  if (code !== '0' && failed === before)
    fail(
      `${name}: vitest exited ${code} though its report shows no failure (see its output above)`,
    );
}

const args = process.argv.slice(2);
while (args.length > 0) {
  const flag = args.shift();
  if (flag === '--stage') {
    const [name, code] = args.splice(0, 2);
    if (code !== '0') fail(`${name}: exited ${code}`);
  } else if (flag === '--vitest') {
    const [name, code, file] = args.splice(0, 3);
    readReport(name, code, file);
  } else {
    console.error(
      `test-summary: unknown argument ${flag}: give --stage NAME CODE or --vitest NAME CODE REPORT`,
    );
    process.exit(2);
  }
}
if (passed === 0 && failed === 0) fail('no test passed: nothing ran, or everything was skipped');
for (const reason of reasons) console.log(`skipped because: ${reason}`);
for (const line of failures) console.log(`failed: ${line}`);
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exitCode = failed > 0 ? 1 : 0;
