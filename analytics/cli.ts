// CLI subcommands of this room, registered on the `lifecycle` program by bin/cli.ts.
import type { Command } from 'commander';
import { ConfigError, loadConfig } from '../platform/config.ts';
import { createAnalyticsStore } from './store.ts';
import { errorMessage } from '../platform/errors.ts';
import { backtest } from './backtest.ts';

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
    .requiredOption('--rule <id>', 'id of the rule to try (a rule disabled in its file is evaluated as if enabled)')
    .requiredOption('--from <iso>', 'start of the window, e.g. 2026-03-01T00:00:00Z (history before it is replayed too, for state)')
    .requiredOption('--to <iso>', 'end of the window (exclusive)')
    .option('--rules <dir>', 'rules folder (default: LC_RULES_DIR)')
    .option('--out <file>', 'also write the would-be send commands, one JSON per line ("-" for stdout)')
    .option('--quiet', 'print neither progress nor the summary')
    .action(async (flags: BacktestFlags) => {
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
        process.stderr.write(`cannot open the analytics store (${config.clickhouse.backend}): ${errorMessage(err)}\n`);
        process.exitCode = 1;
        return;
      }
      try {
        const { exitCode } = await backtest(
          { rule: flags.rule, from: flags.from, to: flags.to, rules: flags.rules ?? config.engine.rulesDir, ...(flags.out ? { out: flags.out } : {}), ...(flags.quiet ? { quiet: true } : {}) },
          { store, database: config.clickhouse.database },
          { stdout: process.stdout, stderr: process.stderr },
        );
        process.exitCode = exitCode;
      } finally {
        await store.close();
      }
    });
}
