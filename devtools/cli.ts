// CLI subcommands of this room, registered on the `lifecycle` program by bin/program.ts:
// `lifecycle generate` drives a running stack (its ingest and API servers) with synthetic users.
import { randomInt } from 'node:crypto';
import type { Command } from 'commander';
import { createLogger } from '../platform/logger.ts';
import { errorMessage } from '../platform/errors.ts';
import { onShutdown } from '../platform/shutdown.ts';
import { createGenerator, progressLine, type GeneratorOptions } from './generator.ts';
import { httpBatchPoster, httpOptIn } from './generator-http.ts';

export interface GenerateFlags {
  ingestUrl: string;
  writeKey: string;
  apiUrl?: string;
  adminToken?: string;
  rate: string;
  duration?: string;
  seed?: string;
  dayMs: string;
  users?: string;
  progressMs: string;
}

export interface GeneratePlan {
  generator: GeneratorOptions;
  ingestUrl: string;
  writeKey: string;
  optIn: { apiUrl: string; token: string } | null;
  durationMs: number | null;
  progressMs: number;
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function url(flag: string, value: string): string {
  try {
    const u = new URL(value);
    if (u.protocol === 'http:' || u.protocol === 'https:') return value;
  } catch {
    // said below
  }
  throw new Error(`${flag} ${value}: not an http(s) URL, e.g. http://127.0.0.1:8088`);
}

/** What the demo and `generate` share: how many users, how fast, which seed; throws with the flag and the fix. */
export function generatorFlags(
  flags: { rate: string; dayMs: string; seed?: string; users?: string },
  randomSeed: () => number,
  names: { seed?: string } = {},
): GeneratorOptions {
  const rate = Number(flags.rate);
  if (!Number.isFinite(rate) || rate <= 0 || rate > 10_000)
    throw new Error(`--rate ${flags.rate}: new users per second, a number above 0 (up to 10000)`);
  const dayMs = Number(flags.dayMs);
  if (!Number.isInteger(dayMs) || dayMs < 10)
    throw new Error(`--day-ms ${flags.dayMs}: whole milliseconds per simulated day, at least 10`);
  let seed = randomSeed();
  if (flags.seed !== undefined) {
    seed = Number(flags.seed);
    if (!/^\d+$/.test(flags.seed) || seed > 0xffffffff)
      throw new Error(`${names.seed ?? '--seed'} ${flags.seed}: an integer from 0 to 4294967295`);
  }
  let maxUsers: number | undefined;
  if (flags.users !== undefined) {
    maxUsers = Number(flags.users);
    if (!Number.isInteger(maxUsers) || maxUsers < 1)
      throw new Error(`--users ${flags.users}: a whole number of users, at least 1`);
  }
  return { rate, seed, dayMs, ...(maxUsers !== undefined ? { maxUsers } : {}) };
}

/** A seed for runs that do not name one. */
export const randomSeed = () => randomInt(0, 2 ** 31);

/** The flags checked and turned into what to run; throws with the flag and the fix. */
export function planGenerate(flags: GenerateFlags, seedIfNone: () => number): GeneratePlan {
  const generator = generatorFlags(flags, seedIfNone);
  const progressMs = Number(flags.progressMs);
  if (!Number.isInteger(progressMs) || progressMs < 100)
    throw new Error(`--progress-ms ${flags.progressMs}: whole milliseconds, at least 100`);
  let durationMs: number | null = null;
  if (flags.duration !== undefined) {
    const m = DURATION.exec(flags.duration.trim());
    if (!m || Number(m[1]) <= 0)
      throw new Error(`--duration ${flags.duration}: a time such as 90s, 10m or 1h`);
    durationMs = Number(m[1]) * UNIT_MS[m[2] ?? 's']!;
  }
  if ((flags.apiUrl === undefined) !== (flags.adminToken === undefined))
    throw new Error(
      '--api-url and --admin-token go together: the opt-ins are written through the API with that token',
    );
  if (flags.writeKey.trim() === '') throw new Error('--write-key: empty');
  return {
    generator,
    ingestUrl: url('--ingest-url', flags.ingestUrl),
    writeKey: flags.writeKey,
    optIn:
      flags.apiUrl !== undefined && flags.adminToken !== undefined
        ? { apiUrl: url('--api-url', flags.apiUrl), token: flags.adminToken }
        : null,
    durationMs,
    progressMs,
  };
}

export function register(program: Command): void {
  program
    .command('generate')
    .description(
      'Send synthetic users to a running stack through its HTTP APIs, as an app and its backend would: signups, feature use, trials that convert or end, payments that fail and recover or churn (addresses at example.com/example.org only; for test and demo stacks, not production)',
    )
    .requiredOption('--ingest-url <url>', 'the ingest (Segment) API, e.g. http://127.0.0.1:8088')
    .requiredOption(
      '--write-key <key>',
      'a server write key of that API (the generator sets email and plan, which client keys may not)',
    )
    .option(
      '--api-url <url>',
      'the API server, for the marketing opt-ins of a share of the users (without it nobody opts in, so marketing rules send nothing)',
    )
    .option(
      '--admin-token <token>',
      'a staff token for the opt-ins: an API key of role service or support, or LC_ADMIN_TOKEN',
    )
    .option('--rate <users/s>', 'new users per second', '2')
    .option('--duration <time>', 'stop after this long, e.g. 90s, 10m, 1h (default: until Ctrl-C)')
    .option('--seed <n>', 'the same seed makes the same users and messageIds (default: random)')
    .option('--day-ms <ms>', 'real milliseconds per simulated day (86400000 for real time)', '1000')
    .option('--users <n>', 'create no more users than this')
    .option('--progress-ms <ms>', 'how often to print the progress line (stderr)', '5000')
    .addHelpText(
      'after',
      "\nExample, against `lifecycle run all` with the development keys:\n  lifecycle generate --ingest-url http://127.0.0.1:8088 --write-key dev-write-key \\\n    --api-url http://127.0.0.1:8089 --admin-token dev-admin-token --rate 5 --duration 2m\n\nOpens and clicks are left out: they are the product's own events, made by its tracker when a\nperson opens a message; the generator does not forge them.",
    )
    .action(async (flags: GenerateFlags) => {
      let plan: GeneratePlan;
      try {
        plan = planGenerate(flags, randomSeed);
      } catch (err) {
        process.stderr.write(`lifecycle generate: ${errorMessage(err)}\n`);
        process.exitCode = 2;
        return;
      }
      const logger = createLogger({ level: 'warn' }, process.stderr);
      const generator = createGenerator(plan.generator, {
        postBatch: httpBatchPoster(plan.ingestUrl, plan.writeKey),
        ...(plan.optIn ? { optIn: httpOptIn(plan.optIn.apiUrl, plan.optIn.token) } : {}),
        logger,
      });
      const g = plan.generator;
      process.stderr.write(
        `generate: seed ${g.seed}, ${g.rate} new users/s, a simulated day every ${g.dayMs} ms, into ${plan.ingestUrl}${plan.optIn ? '' : ' (no --api-url: nobody opts in to marketing)'}\n`,
      );
      const progress = setInterval(
        () => process.stderr.write(`${progressLine(generator.stats())}\n`),
        plan.progressMs,
      );
      const stop = async () => {
        clearInterval(progress);
        await generator.stop();
        process.stdout.write(`${progressLine(generator.stats())}\n`);
      };
      onShutdown(logger, stop);
      await generator.start();
      let timer: NodeJS.Timeout | undefined;
      const elapsed = new Promise<void>((resolve) => {
        if (plan.durationMs !== null) timer = setTimeout(resolve, plan.durationMs);
      });
      try {
        await Promise.race([generator.done, elapsed]);
        await stop();
      } catch (err) {
        clearInterval(progress);
        process.stderr.write(`lifecycle generate: ${errorMessage(err)}\n`);
        process.exitCode = 1;
      } finally {
        clearTimeout(timer);
      }
    });
}
