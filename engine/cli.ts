// CLI subcommands of this room, registered on the `lifecycle` program by bin/cli.ts.
import { createReadStream, createWriteStream, statSync, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import type { SendCommand } from '../platform/contracts.ts';
import { loadRuleSet, formatRuleError } from '../rules/index.ts';
import { createSimulation, formatSummary, toOutputRecord } from './core/simulate.ts';

const PROGRESS_EVERY = 10_000;

export function register(program: Command): void {
  program
    .command('simulate')
    .description(
      'Run the engine over a file of events with in-memory state and a virtual clock that follows event timestamps; write the send commands it would produce (one JSON per line).',
    )
    .requiredOption('--rules <dir>', 'rules folder (rule files, segments/)')
    .requiredOption('--events <file>', 'events, one JSON per line: Segment-style messages or normalised events ("-" for stdin)')
    .requiredOption('--out <file>', 'where to write send commands, one JSON per line ("-" for stdout)')
    .option('--templates <dir>', 'templates folder: also check that every rule names an existing template')
    .option('--until <iso>', 'after the last event, advance the clock to this time (fires timers and schedules up to it)')
    .option('--strict', 'exit 1 when any input line was invalid (they are always reported and skipped)')
    .option('--quiet', 'no progress or summary on stderr/stdout')
    .action(async (opts: { rules: string; events: string; out: string; templates?: string; until?: string; strict?: boolean; quiet?: boolean }) => {
      process.exitCode = await runSimulate(opts);
    });
}

async function runSimulate(opts: { rules: string; events: string; out: string; templates?: string; until?: string; strict?: boolean; quiet?: boolean }): Promise<number> {
  let until: number | null = null;
  if (opts.until !== undefined) {
    until = Date.parse(opts.until);
    if (!Number.isFinite(until)) {
      process.stderr.write(`--until: ${JSON.stringify(opts.until)} is not an ISO date (e.g. 2026-03-01T00:00:00Z)\n`);
      return 1;
    }
  }
  const loaded = await loadRuleSet(opts.rules, opts.templates === undefined ? {} : { templatesDir: opts.templates });
  if (!loaded.ok) {
    for (const e of loaded.errors) process.stderr.write(`${formatRuleError(e)}\n`);
    return 1;
  }
  const ruleSet = loaded.ruleSet;

  let totalBytes = 0;
  if (opts.events !== '-') {
    try {
      totalBytes = statSync(opts.events).size;
    } catch (err) {
      process.stderr.write(`--events: cannot read ${opts.events}: ${(err as Error).message}\n`);
      return 1;
    }
  }
  const toStdout = opts.out === '-';
  let out: NodeJS.WritableStream = process.stdout;
  if (!toStdout) {
    const file = createWriteStream(opts.out);
    const opened = await new Promise<Error | null>((resolve) => {
      file.once('open', () => resolve(null));
      file.once('error', resolve);
    });
    if (opened) {
      process.stderr.write(`--out: cannot write ${opts.out}: ${opened.message}\n`);
      return 1;
    }
    out = file;
  }
  // The summary goes where it does not mix with the send commands.
  const report = (text: string) => (opts.quiet ? undefined : (toStdout ? process.stderr : process.stdout).write(`${text}\n`));
  const progress = (text: string) => (opts.quiet ? undefined : process.stderr.write(`${text}\n`));

  const sim = createSimulation({ ruleSet: () => ruleSet });
  const input = opts.events === '-' ? process.stdin : createReadStream(opts.events);
  const rl = createInterface({ input, crlfDelay: Infinity });
  let lineNo = 0;
  let bytes = 0;
  const started = Date.now();
  try {
    for await (const text of rl) {
      lineNo++;
      bytes += Buffer.byteLength(text) + 1;
      const sends = sim.line(text, lineNo);
      if (sends.length > 0) await writeSends(out, sends);
      if (lineNo % PROGRESS_EVERY === 0) {
        const pct = totalBytes > 0 ? ` (${Math.min(100, Math.round((bytes / totalBytes) * 100))}%)` : '';
        progress(`simulate: ${lineNo} lines${pct}, ${sim.summary().sends} sends, ${Math.round(lineNo / Math.max(0.001, (Date.now() - started) / 1000))} lines/s`);
      }
    }
    if (until !== null) {
      const sends = sim.advanceTo(until);
      if (sends.length > 0) await writeSends(out, sends);
    }
  } finally {
    if (!toStdout) await new Promise<void>((resolve, reject) => (out as WriteStream).end((err?: Error | null) => (err ? reject(err) : resolve())));
  }
  const summary = sim.summary();
  report(formatSummary(summary));
  if (!toStdout) report(`send commands written to ${opts.out}`);
  return opts.strict && summary.invalid.length > 0 ? 1 : 0;
}

async function writeSends(out: NodeJS.WritableStream, sends: readonly SendCommand[]): Promise<void> {
  let chunk = '';
  for (const send of sends) chunk += `${JSON.stringify(toOutputRecord(send))}\n`;
  if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', resolve));
}
