import { defineConfig } from 'vitest/config';

// Most tests wait on real engines (Redis, PostgreSQL, brokers, spawned processes) rather than compute:
// the whole suite keeps about a third of a 2-core machine busy at one file per core. So files run three
// at a time (unit and integration), and end-to-end and chaos files two at a time once those finish
// (they spawn whole platforms and private brokers on spare ports; none touches the machine's engines).
// Vitest wants one worker count per group, hence the count on each project.
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'], maxWorkers: 3 } },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', 'test/contract/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          maxWorkers: 3,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts', 'test/chaos/**/*.test.ts'],
          testTimeout: 180_000,
          hookTimeout: 120_000,
          maxWorkers: 2,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
