// Prints the suite's closing line from vitest's JSON report, exactly `tests: N passed, M failed` (what CI
// reads), after a line with the skipped count when there are any.
import { readFileSync } from 'node:fs';

const file = process.argv[2];
let report;
try {
  report = JSON.parse(readFileSync(file, 'utf8'));
} catch {
  console.log('tests: 0 passed, 1 failed');
  console.error(`test-summary: no vitest report at ${file}`);
  process.exit(1);
}
const passed = report.numPassedTests ?? 0;
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
// A test file that failed without a failed test of its own (it failed to load, or a beforeAll/afterAll
// hook failed and its tests were skipped): count it as one failure.
const loadFailures = (report.testResults ?? []).filter(
  (r) => r.status === 'failed' && !(r.assertionResults ?? []).some((a) => a.status === 'failed'),
).length;
const failed = (report.numFailedTests ?? 0) + loadFailures;
if (skipped > 0) console.log(`skipped: ${skipped} (it.skipIf: guarantees a transport does not make)`);
console.log(`tests: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
