/**
 * The suites `npm run mutate` (StrykerJS) runs against each mutant: the in-process ones
 * that exercise the machine and the holder — no child processes, no Postgres.
 *
 * The list lives here, not in Stryker's `testFiles`: with `testFiles` Stryker 9.6 activates
 * static mutants (the machine's definition, evaluated at import) only after the import, so
 * every one of them survives.
 */
import { defineConfig } from 'vitest/config';
import { unloadableFileFails } from './test/support/unloadableFileFails.js';
import base from './vitest.config.js';

// Spread, not mergeConfig: mergeConfig would append to the base include, not replace it.
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: [
      'test/holder*.test.ts',
      'test/machine*.test.ts',
      'test/paths.test.ts',
      'test/table.test.ts',
      'test/input.test.ts',
      'test/boot.test.ts',
      'test/emit.test.ts',
      'test/restore.test.ts',
    ],
    // A mutant that stops a module from loading fails the suites that import it.
    reporters: ['default', unloadableFileFails()],
  },
});
