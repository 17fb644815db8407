import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Stryker's sandboxes hold a copy of test/ (npm run mutate).
    exclude: [...configDefaults.exclude, '.stryker-tmp/**'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // Integration suites start child processes and throwaway Postgres clusters;
    // two workers keep a 2-core machine responsive.
    maxWorkers: 2,
  },
});
