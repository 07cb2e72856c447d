// vitest's JSON report plus what it leaves out, for scripts/test-summary.mjs: errors outside tests and why the run ended.
// vitest's own JSON report counts the tests under a failed beforeAll as skipped, keeps no message of a failing
// describe, and says nothing of unhandled errors (the run fails, the report says success). This reporter adds:
//   failedSuites: [{ file, suite, message, testsNotRun }]  a test file or describe that failed outside its tests
//                 (a hook, the describe body, the file not loading), with the tests that therefore did not run
//   unhandledErrors: [{ file, test, message }]            errors no test caught (a rejection nobody awaited)
//   endReason: 'passed' | 'failed' | 'interrupted'
// Used as `vitest run --reporter=./scripts/test-report.mjs --outputFile.json=FILE`.
import { relative } from 'node:path';
import { JsonReporter } from 'vitest/node';

const firstLine = (error) => String(error?.message ?? error ?? '').split('\n')[0] ?? '';

function testsOf(task) {
  return task.type === 'suite' ? task.tasks.flatMap(testsOf) : [task];
}

/** The tests of a failed suite that vitest skipped for it (a test skipped on purpose has no result at all). */
function notRun(suite) {
  return testsOf(suite).filter((test) => test.result?.state === 'skip').length;
}

function failedSuites(task, file, path, found) {
  if (task.type !== 'suite') return;
  for (const error of task.result?.errors ?? [])
    found.push({
      file,
      suite: path.join(' > '),
      message: firstLine(error),
      testsNotRun: notRun(task),
    });
  for (const child of task.tasks) failedSuites(child, file, [...path, child.name], found);
}

export default class TestReport extends JsonReporter {
  extra = {};

  async onTestRunEnd(testModules, unhandledErrors = [], reason = 'failed') {
    const root = this.ctx.config.root;
    const suites = [];
    for (const module of testModules) {
      const file = relative(root, module.task.filepath);
      // The file itself is the outermost suite: its errors are a top-level hook or the file not loading.
      for (const error of module.task.result?.errors ?? [])
        suites.push({
          file,
          suite: '',
          message: firstLine(error),
          testsNotRun: notRun(module.task),
        });
      for (const child of module.task.tasks) failedSuites(child, file, [child.name], suites);
    }
    this.extra = {
      failedSuites: suites,
      unhandledErrors: unhandledErrors.map((error) => ({
        file: error.VITEST_TEST_PATH ? relative(root, error.VITEST_TEST_PATH) : '',
        test: error.VITEST_TEST_NAME ?? '',
        message: `${error.name ?? 'Error'}: ${firstLine(error)}`,
      })),
      endReason: reason,
    };
    await super.onTestRunEnd(testModules, unhandledErrors, reason);
  }

  async writeReport(report) {
    await super.writeReport(JSON.stringify({ ...JSON.parse(report), ...this.extra }));
  }
}
