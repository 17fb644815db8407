/**
 * A vitest reporter for the mutation run only (vitest.mutate.config.ts): a test file that
 * fails to load becomes one failed test.
 *
 * Why: Stryker's vitest runner (9.6, also 10.x: stryker-js issue #6150) builds a mutant's
 * verdict from the tests vitest collected. A static mutant that makes a module throw on
 * import (an empty `initial`, a state without its `primaryState`, a row without its number:
 * the table refuses to derive) leaves the importing test files with no tests at all, so
 * the mutant counted as survived although every suite that imports the module fails.
 */
import type { RunnerTestCase } from 'vitest';
import type { Reporter, Vitest } from 'vitest/node';

export function unloadableFileFails(): Reporter {
  let vitest: Vitest | undefined;
  return {
    onInit(ctx) {
      vitest = ctx;
    },
    // Runs inside `vitest.start()`, before Stryker's runner reads `vitest.state`.
    onTestRunEnd() {
      for (const file of vitest?.state.getFiles() ?? []) {
        if (file.result?.state !== 'fail' || file.tasks.length > 0) continue;
        const name = 'the test file loads';
        // Only Stryker reads this task, after the run: no test context is ever built for it.
        const failed = {
          type: 'test',
          id: `${file.id}_load`,
          name,
          fullName: `${file.name} > ${name}`,
          fullTestName: name,
          mode: 'run',
          meta: {},
          file,
          suite: file,
          timeout: 0,
          annotations: [],
          artifacts: [],
          result: { state: 'fail', errors: file.result.errors ?? [] },
        } as unknown as RunnerTestCase;
        file.tasks.push(failed);
      }
    },
  };
}
