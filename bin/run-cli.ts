// `lifecycle run` (production processes) and `lifecycle demo` (the embedded default).
import type { Command } from 'commander';
import { ConfigError, loadConfig, type LoadOptions } from '../platform/config.ts';
import { createLogger } from '../platform/logger.ts';
import { onShutdown } from '../platform/shutdown.ts';
import { errorMessage } from '../platform/errors.ts';
import { PROCESSES, startProcesses, stopProcesses, type ProcessName } from './processes.ts';
import { startDemo } from './demo.ts';

function configOrExit(options: LoadOptions) {
  try {
    return loadConfig(undefined, {}, options);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const p of err.problems) console.error(`config: ${p}`);
      process.exit(2);
    }
    throw err;
  }
}

export function register(program: Command): void {
  program
    .command('run')
    .description(
      `Run production processes (${PROCESSES.join(', ')}, or all) against Kafka, Redis and ClickHouse; configured by LC_* variables`,
    )
    .argument('<process...>', `one or more of: ${PROCESSES.join(', ')}, all`)
    .addHelpText(
      'after',
      '\nExamples:\n  lifecycle run engine\n  lifecycle run ingest api\n  LC_KAFKA_BROKERS=kafka:9092 lifecycle run all',
    )
    .action(async (names: string[]) => {
      const wanted = names.includes('all') ? [...PROCESSES] : names;
      const unknown = wanted.filter((n) => !(PROCESSES as readonly string[]).includes(n));
      if (unknown.length) {
        console.error(
          `unknown process: ${unknown.join(', ')} (one of ${PROCESSES.join(', ')}, all)`,
        );
        process.exit(2);
      }
      const config = configOrExit({ serving: true });
      const logger = createLogger({ level: config.log.level });
      try {
        const running = await startProcesses(wanted as ProcessName[], config, logger);
        for (const r of running) logger.info({ process: r.name, url: r.url }, 'running');
        onShutdown(logger, () => stopProcesses(running));
      } catch (err) {
        logger.fatal({ err }, 'could not start');
        console.error(`lifecycle run: ${errorMessage(err)}`);
        process.exit(1);
      }
    });

  program
    .command('demo')
    .description(
      'The embedded default: ingest API, engine, delivery, tracking and in-app API, and an SMTP outbox in one process on localhost, seeded with sample users (in-memory bus and engine state: for trying rules, not for production)',
    )
    .option('--data <dir>', 'folder for the outbox and scratch data', '.data/demo')
    .option('--no-seed', 'start without the sample users')
    .option('--log-level <level>', 'log level of the demo process', 'warn')
    .option(
      '--exit-after-seed',
      'wait for the sample messages to be delivered, print them, then exit (smoke test)',
    )
    .addHelpText(
      'after',
      '\nPorts: LC_INGEST_PORT (8088) and LC_API_PORT (8089); rules from LC_RULES_DIR (rules/examples), templates from LC_TEMPLATES_DIR.',
    )
    .action(
      async (opts: { data: string; seed: boolean; logLevel: string; exitAfterSeed?: boolean }) => {
        const config = configOrExit({});
        const logger = createLogger({ level: opts.logLevel });
        try {
          const demo = await startDemo({ dataDir: opts.data, seed: opts.seed }, logger);
          const u = demo.urls;
          console.log(
            [
              'Lifecycle demo: embedded mode (in-memory bus and engine state; not a production mode).',
              '',
              `  Ingest API (Segment-compatible)  ${u.ingest}   server write key: ${demo.writeKey}${demo.clientKey ? `   browser (client) key: ${demo.clientKey}` : ''}`,
              `  Admin, tracking, in-app API      ${u.api}   admin token: ${config.auth.adminToken === 'dev-admin-token' ? 'dev-admin-token (development value)' : 'your LC_ADMIN_TOKEN'}`,
              `  OpenAPI                          ${u.openapiIngest}  ${u.openapiApi}`,
              `  Outbox (every email sent)        ${u.outbox}`,
              `  Dashboards (analytics in chDB)   ${u.dashboards}   (enter the admin token)`,
              `  Health / metrics                 ${u.health}  ${u.metrics}`,
              `  Rules (hot-reloaded)             ${config.engine.rulesDir}`,
              '',
              'Try:',
              `  curl -u ${demo.writeKey}: ${u.ingest}/v1/track -H 'content-type: application/json' \\`,
              `    -d '{"userId":"demo-ada","event":"payment_failed","properties":{"amount":9.99}}'`,
              `  curl ${u.outbox}`,
              '',
              'Ctrl-C stops.',
            ].join('\n'),
          );
          if (opts.exitAfterSeed) {
            const deadline = Date.now() + 20_000;
            let messages: { subject: string; to: string[] }[] = [];
            while (Date.now() < deadline) {
              messages = ((await (await fetch(u.outbox!)).json()) as { messages: typeof messages })
                .messages;
              if (messages.length >= 4) break;
              await new Promise((r) => setTimeout(r, 250));
            }
            console.log(`\noutbox: ${messages.length} message(s)`);
            for (const m of messages) console.log(`  ${m.to.join(',')}: ${m.subject}`);
            await demo.stop();
            process.exit(messages.length > 0 ? 0 : 1);
          }
          onShutdown(logger, () => demo.stop());
        } catch (err) {
          console.error(`lifecycle demo: ${errorMessage(err)}`);
          process.exit(1);
        }
      },
    );
}
