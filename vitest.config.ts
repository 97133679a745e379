import { defineConfig } from 'vitest/config';

// Three projects: `unit` never touches the network; `integration` talks to the real
// Kafka, Redis, PostgreSQL/Debezium, ClickHouse and SMTP started by test/global-setup.ts;
// `chaos` (test/chaos/) restarts those shared services, so scripts/test runs it alone, after
// the other two.
const ignored = ['node_modules/**', '.stack/**', '.data/**'];
const chaos = 'test/chaos/**/*.chaos.test.ts';
// A plain `vitest run` would run `chaos` beside `integration` and restart the services under
// its tests: the project exists only when named (`--project chaos`).
const chaosNamed = process.argv.some(
  (arg, i) => arg === '--project=chaos' || (arg === 'chaos' && process.argv[i - 1] === '--project'),
);

export default defineConfig({
  test: {
    reporters: ['default'],
    // Line and branch coverage of the product's code (the test command turns it on with
    // --coverage and holds the lines to its floor; a plain `vitest run` stays fast). Files
    // no test loads count as uncovered. Processes the integration tests spawn
    // (`bin/lifecycle run ...`) are not measured: what they run is counted only where a test
    // also calls it in-process.
    coverage: {
      provider: 'v8',
      include: [
        '{platform,access,rules,engine,ingestion,delivery,analytics,dashboards,admin,devtools,bin}/**/*.ts',
      ],
      exclude: ['**/*.test.ts', '**/*.d.ts'],
      reporter: ['text-summary', 'json-summary'],
      reportsDirectory: '.stack/coverage',
      // The summary is written when a test failed too: the test command reports both.
      reportOnFailure: true,
    },
    // Integration tests isolate themselves (own topics, groups, key prefixes, databases),
    // so files run in parallel; two cores leave room for three workers plus the services.
    // `--expose-gc`: tests that bound memory collect garbage before they measure the heap, so
    // they measure what is kept, not what the collector has not reached yet.
    poolOptions: {
      forks: { maxForks: 3, minForks: 1, execArgv: ['--expose-gc'] },
      threads: { maxThreads: 3, minThreads: 1 },
    },
    projects: [
      {
        test: {
          name: 'unit',
          include: ['**/*.test.ts'],
          exclude: [...ignored, '**/*.int.test.ts', chaos],
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
          exclude: [...ignored, chaos],
          environment: 'node',
          globalSetup: ['test/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          pool: 'forks',
        },
      },
      ...(chaosNamed
        ? [
            {
              test: {
                name: 'chaos',
                include: [chaos],
                exclude: ignored,
                environment: 'node' as const,
                testTimeout: 900_000,
                pool: 'forks' as const,
              },
            },
          ]
        : []),
    ],
  },
});
