import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // Integration suites start child processes and throwaway Postgres clusters;
    // two workers keep a 2-core machine responsive.
    maxWorkers: 2,
  },
});
