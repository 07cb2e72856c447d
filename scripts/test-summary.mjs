// Adds up vitest's JSON reports into the one closing line CI reads: "tests: N passed, N failed, N skipped".
import { readFileSync } from 'node:fs';

let passed = 0;
let failed = 0;
let skipped = 0;
const reasons = new Set();
for (const file of process.argv.slice(2)) {
  const report = JSON.parse(readFileSync(file, 'utf8'));
  passed += report.numPassedTests;
  failed += report.numFailedTests;
  // A test file that fails to load runs no test: count it as one failure so it cannot pass unseen.
  for (const suite of report.testResults ?? []) {
    if (suite.status === 'failed' && (suite.assertionResults ?? []).length === 0) failed++;
  }
  skipped += report.numPendingTests + report.numTodoTests;
  for (const suite of report.testResults ?? []) {
    for (const test of suite.assertionResults ?? []) {
      const reason = /\(skipped: (.+)\)/.exec(test.ancestorTitles?.join(' ') ?? '');
      if (test.status !== 'passed' && reason) reasons.add(reason[1]);
    }
  }
}
for (const reason of reasons) console.log(`skipped because: ${reason}`);
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
