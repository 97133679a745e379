// CLI subcommands of this room, registered on the `lifecycle` program by bin/cli.ts.
import type { Command } from 'commander';
import { simulateFile, type SimulateFileOptions } from './simulate-file.ts';

export function register(program: Command): void {
  program
    .command('simulate')
    .description(
      'Run the engine over a file of events with in-memory state and a virtual clock that follows event timestamps; write the send commands it would produce (one JSON per line).',
    )
    .requiredOption('--rules <dir>', 'rules folder (rule files, segments/)')
    .requiredOption(
      '--events <file>',
      'events, one JSON per line: Segment-style messages or normalised events ("-" for stdin)',
    )
    .requiredOption(
      '--out <file>',
      'where to write send commands, one JSON per line ("-" for stdout)',
    )
    .option(
      '--templates <dir>',
      'templates folder: also check that every rule names an existing template',
    )
    .option(
      '--until <iso>',
      'after the last event, advance the clock to this time (fires timers and schedules up to it)',
    )
    .option(
      '--strict',
      'exit 1 when any input line was invalid (they are always reported and skipped)',
    )
    .option('--quiet', 'print neither progress nor the summary')
    .action(async (opts: SimulateFileOptions) => {
      const { exitCode } = await simulateFile(opts, {
        stdout: process.stdout,
        stderr: process.stderr,
        stdin: process.stdin,
      });
      process.exitCode = exitCode;
    });
}
