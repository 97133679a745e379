import { defineConfig } from 'vitest/config';

// Two projects: `unit` never touches the network; `integration` talks to the real
// Kafka, Redis, PostgreSQL/Debezium, ClickHouse and SMTP started by test/global-setup.ts.
const ignored = ['node_modules/**', '.stack/**', '.data/**'];

export default defineConfig({
  test: {
    reporters: ['default'],
    // Integration tests isolate themselves (own topics, groups, key prefixes, databases),
    // so files run in parallel; two cores leave room for three workers plus the services.
    poolOptions: { forks: { maxForks: 3, minForks: 1 }, threads: { maxThreads: 3, minThreads: 1 } },
    projects: [
      {
        test: {
          name: 'unit',
          include: ['**/*.test.ts'],
          exclude: [...ignored, '**/*.int.test.ts'],
          environment: 'node',
          // Property tests take about a second alone and several beside the integration
          // suite's services on two cores: the default 5 s made them fail by load, not by code.
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['**/*.int.test.ts'],
          exclude: ignored,
          environment: 'node',
          globalSetup: ['test/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          pool: 'forks',
        },
      },
    ],
  },
});
