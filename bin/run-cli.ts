// `lifecycle run` (production processes) and `lifecycle demo` (the embedded default).
import type { Command } from 'commander';
import { ConfigError, loadConfig, type LoadOptions } from '../platform/config.ts';
import { createLogger } from '../platform/logger.ts';
import { onShutdown } from '../platform/shutdown.ts';
import { errorMessage } from '../platform/errors.ts';
import { PROCESSES, startProcesses, stopProcesses, type ProcessName } from './processes.ts';
import { startDemo } from './demo.ts';
import { generatorFlags, randomSeed } from '../devtools/cli.ts';
import type { GeneratorOptions } from '../devtools/generator.ts';

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
      'The embedded default: ingest API, engine, delivery, tracking and in-app API, dashboards and an SMTP outbox in one process on localhost, seeded with sample users and fed synthetic ones as they sign up, use the app, subscribe, pay and churn (in-memory bus and engine state: for trying rules, not for production)',
    )
    .option('--data <dir>', 'folder for the outbox and scratch data', '.data/demo')
    .option('--no-seed', 'start without the sample users')
    .option('--no-generate', 'no synthetic users: only the sample users and what you send')
    .option('--rate <users/s>', 'new synthetic users per second', '2')
    .option(
      '--generator-seed <n>',
      'the same number makes the same synthetic users and messageIds (default: random)',
    )
    .option('--day-ms <ms>', 'real milliseconds per simulated day of the synthetic users', '1000')
    .option('--log-level <level>', 'log level of the demo process', 'warn')
    .option(
      '--exit-after-seed',
      'wait for the sample messages to be delivered, print them, then exit (smoke test; no synthetic users)',
    )
    .addHelpText(
      'after',
      '\nPorts: LC_INGEST_PORT (8088) and LC_API_PORT (8089); rules from LC_RULES_DIR (rules/examples), templates from LC_TEMPLATES_DIR.\nThe synthetic users are what `lifecycle generate` sends to a running stack; the progress line goes to stderr every 5 s.',
    )
    .action(
      async (opts: {
        data: string;
        seed: boolean;
        generate: boolean;
        rate: string;
        generatorSeed?: string;
        dayMs: string;
        logLevel: string;
        exitAfterSeed?: boolean;
      }) => {
        const config = configOrExit({});
        const logger = createLogger({ level: opts.logLevel });
        let generate: GeneratorOptions | undefined;
        try {
          if (opts.generate && !opts.exitAfterSeed)
            generate = generatorFlags(
              {
                rate: opts.rate,
                dayMs: opts.dayMs,
                ...(opts.generatorSeed !== undefined ? { seed: opts.generatorSeed } : {}),
              },
              randomSeed,
              { seed: '--generator-seed' },
            );
        } catch (err) {
          console.error(`lifecycle demo: ${errorMessage(err)}`);
          process.exit(2);
        }
        try {
          const demo = await startDemo(
            {
              dataDir: opts.data,
              seed: opts.seed,
              ...(generate ? { generate } : {}),
              progress: { write: (line) => process.stderr.write(`${line}\n`) },
            },
            logger,
          );
          const u = demo.urls;
          const g = demo.generator;
          const key =
            config.auth.adminToken === 'dev-admin-token'
              ? 'dev-admin-token'
              : 'your LC_ADMIN_TOKEN';
          // The first line is the one URL to open; the rest stays short.
          console.log(
            [
              u.admin,
              `  Key: ${key} (the admin pages' login asks for it)`,
              `  Lifecycle demo: the whole product in this one process, state in memory. Not a production mode.`,
              g
                ? `  Synthetic users: ${g.rate} new per second, seed ${g.seed} (--rate, --generator-seed, --no-generate); progress on stderr`
                : '  No synthetic users: send your own events to the ingest API',
              `  Ingest (Segment API)  ${u.ingest}   write key ${demo.writeKey}${demo.clientKey ? `, browser key ${demo.clientKey}` : ''}`,
              `  Outbox                ${u.outbox}`,
              `  API                   ${u.api}   ${u.openapiApi}`,
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
