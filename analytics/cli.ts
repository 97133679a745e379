// CLI subcommands of this room, registered on the `lifecycle` program by bin/cli.ts.
import type { Command } from 'commander';
import { ConfigError, loadConfig, type Config } from '../platform/config.ts';
import { createAnalyticsStore, type AnalyticsStore } from './store.ts';
import { errorMessage } from '../platform/errors.ts';
import { backtest } from './backtest.ts';
import { erasureLog, pendingMutations } from './erasure.ts';

interface BacktestFlags {
  rule: string;
  from: string;
  to: string;
  rules?: string;
  out?: string;
  quiet?: boolean;
}

export function register(program: Command): void {
  program
    .command('backtest')
    .description(
      'Replay the event history kept in ClickHouse through the engine and report who a rule would have sent what between --from and --to, compared with what the live rule sent. The store is the one LC_ANALYTICS_BACKEND / LC_CLICKHOUSE_* name.',
    )
    .requiredOption(
      '--rule <id>',
      'id of the rule to try (a rule disabled in its file is evaluated as if enabled)',
    )
    .requiredOption(
      '--from <iso>',
      'start of the window, e.g. 2026-03-01T00:00:00Z (history before it is replayed too, for state)',
    )
    .requiredOption('--to <iso>', 'end of the window (exclusive)')
    .option('--rules <dir>', 'rules folder (default: LC_RULES_DIR)')
    .option(
      '--out <file>',
      'also write the would-be send commands, one JSON per line ("-" for stdout)',
    )
    .option('--quiet', 'print neither progress nor the summary')
    .action((flags: BacktestFlags) =>
      withStore(async (store, config) => {
        const { exitCode } = await backtest(
          {
            rule: flags.rule,
            from: flags.from,
            to: flags.to,
            rules: flags.rules ?? config.engine.rulesDir,
            ...(flags.out ? { out: flags.out } : {}),
            ...(flags.quiet ? { quiet: true } : {}),
          },
          { store, database: config.clickhouse.database },
          { stdout: process.stdout, stderr: process.stderr },
        );
        return exitCode;
      }),
    );

  program
    .command('erasures')
    .description(
      'List the erasures (right to be forgotten) the analytics sink carried out, newest first, one JSON object per line: user, the deletion event and its source, when it was asked and done, and the rows erased per table. A replayed deletion shows as a second entry. --pending lists the erasure mutations ClickHouse is still applying.',
    )
    .option('--user <id>', 'only the erasures of this user')
    .option('--limit <n>', 'at most this many entries', '100')
    .option(
      '--pending',
      'the mutations still being applied instead (empty once every erasure is done)',
    )
    .action((flags: ErasuresFlags) =>
      withStore(async (store, config) => {
        const limit = Number(flags.limit);
        if (!Number.isInteger(limit) || limit < 1) {
          process.stderr.write(`--limit must be a positive integer, got ${flags.limit}\n`);
          return 1;
        }
        const database = config.clickhouse.database;
        try {
          const rows = flags.pending
            ? await pendingMutations(store, database)
            : await erasureLog(store, database, {
                limit,
                ...(flags.user !== undefined ? { userId: flags.user } : {}),
              });
          for (const row of rows) process.stdout.write(`${JSON.stringify(row)}\n`);
          return 0;
        } catch (err) {
          process.stderr.write(`${errorMessage(err)}\n`);
          return 1;
        }
      }),
    );
}

interface ErasuresFlags {
  user?: string;
  limit: string;
  pending?: boolean;
}

/** Runs a command on the store the config names (LC_ANALYTICS_BACKEND, LC_CLICKHOUSE_*); its result is the exit code. */
async function withStore(
  run: (store: AnalyticsStore, config: Readonly<Config>) => Promise<number>,
): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`${err instanceof ConfigError ? err.message : errorMessage(err)}\n`);
    process.exitCode = 1;
    return;
  }
  let store;
  try {
    store = await createAnalyticsStore(config.clickhouse);
  } catch (err) {
    process.stderr.write(
      `cannot open the analytics store (${config.clickhouse.backend}): ${errorMessage(err)}\n`,
    );
    process.exitCode = 1;
    return;
  }
  try {
    process.exitCode = await run(store, config);
  } finally {
    await store.close();
  }
}
