// Mutation testing: `npm run mutate` (not in CI, not in `npm test`; about 25 min on 2 cores).
// Mutates the §9.1 machine and the holder, and runs only the in-process suites that
// exercise them (vitest.mutate.config.ts): no child processes, no Postgres, so a mutant's
// verdict is the tests' and not a slow start's. Reports land in reports/mutation/ (gitignored).
// Core 9.x: StrykerJS 10 needs Node 22; 9.6's vitest runner supports vitest 4.

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'npm',
  testRunner: 'vitest',
  // The suites to run are vitest.mutate.config.ts's include (see why there).
  vitest: { configFile: 'vitest.mutate.config.ts' },
  coverageAnalysis: 'perTest',
  // The machine (and its types' constants), the holder and its parts; nothing else.
  mutate: ['machines/*.ts', 'src/holder.ts', 'src/holder/*.ts'],
  ignorePatterns: ['dist', 'test-artifacts', '.kora-opstate', 'coverage'],
  // The vitest runner uses one thread per Stryker worker: two workers fill two cores.
  concurrency: 2,
  timeoutMS: 10_000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  thresholds: { high: 90, low: 80, break: null },
};
