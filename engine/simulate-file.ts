// `lifecycle simulate` over files: loads the rules, streams the events file line by line
// through the simulation, writes send commands as JSON lines, reports progress and a summary.
import { createReadStream, statSync, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { SendCommand } from '../platform/contracts.ts';
import { closeOutputFile, openOutputFile } from '../platform/output-file.ts';
import { loadRuleSet, formatRuleError } from '../rules/index.ts';
import {
  createSimulation,
  formatSummary,
  toOutputRecord,
  type SimulationSummary,
} from './core/simulate.ts';

const PROGRESS_EVERY = 10_000;

export interface SimulateFileOptions {
  rules: string;
  /** Path, or "-" for stdin. */
  events: string;
  /** Path, or "-" for stdout. */
  out: string;
  templates?: string;
  until?: string;
  strict?: boolean;
  quiet?: boolean;
}

export interface SimulateIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin?: NodeJS.ReadableStream;
}

/** Runs a simulation; resolves to the exit code (0 ok, 1 invalid rules/arguments, or invalid lines with `strict`) and the summary when it ran. */
export async function simulateFile(
  opts: SimulateFileOptions,
  io: SimulateIo,
): Promise<{ exitCode: number; summary: SimulationSummary | null }> {
  const fail = (text: string) => {
    io.stderr.write(`${text}\n`);
    return { exitCode: 1, summary: null };
  };
  let until: number | null = null;
  if (opts.until !== undefined) {
    until = Date.parse(opts.until);
    if (!Number.isFinite(until))
      return fail(
        `--until: ${JSON.stringify(opts.until)} is not an ISO date (e.g. 2026-03-01T00:00:00Z)`,
      );
  }
  const loaded = await loadRuleSet(
    opts.rules,
    opts.templates === undefined ? {} : { templatesDir: opts.templates },
  );
  if (!loaded.ok) return fail(loaded.errors.map(formatRuleError).join('\n'));
  const ruleSet = loaded.ruleSet;

  let totalBytes = 0;
  if (opts.events !== '-') {
    try {
      totalBytes = statSync(opts.events).size;
    } catch (err) {
      return fail(`--events: cannot read ${opts.events}: ${(err as Error).message}`);
    }
  }
  const toStdout = opts.out === '-';
  let out: NodeJS.WritableStream = io.stdout;
  if (!toStdout) {
    const file = await openOutputFile(opts.out);
    if (file instanceof Error) return fail(`--out: cannot write ${opts.out}: ${file.message}`);
    out = file;
  }
  // The summary goes where it does not mix with the send commands.
  const report = (text: string) =>
    void (opts.quiet ? undefined : (toStdout ? io.stderr : io.stdout).write(`${text}\n`));
  const progress = (text: string) => void (opts.quiet ? undefined : io.stderr.write(`${text}\n`));

  const sim = createSimulation({ ruleSet: () => ruleSet });
  const input = opts.events === '-' ? (io.stdin ?? process.stdin) : createReadStream(opts.events);
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
        const pct =
          totalBytes > 0 ? ` (${Math.min(100, Math.round((bytes / totalBytes) * 100))}%)` : '';
        const rate = Math.round(lineNo / Math.max(0.001, (Date.now() - started) / 1000));
        progress(`simulate: ${lineNo} lines${pct}, ${sim.summary().sends} sends, ${rate} lines/s`);
      }
    }
    if (until !== null) {
      const sends = sim.advanceTo(until);
      if (sends.length > 0) await writeSends(out, sends);
    }
  } finally {
    if (!toStdout) await closeOutputFile(out as WriteStream);
  }
  const summary = sim.summary();
  report(formatSummary(summary));
  if (!toStdout) report(`send commands written to ${opts.out}`);
  return { exitCode: opts.strict && summary.invalid.length > 0 ? 1 : 0, summary };
}

async function writeSends(
  out: NodeJS.WritableStream,
  sends: readonly SendCommand[],
): Promise<void> {
  let chunk = '';
  for (const send of sends) chunk += `${JSON.stringify(toOutputRecord(send))}\n`;
  if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', resolve));
}
