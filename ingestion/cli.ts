// CLI subcommands of this room, registered on the `lifecycle` program by bin/cli.ts.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CdcMappingSchema, loadMapping, MappingError } from './cdc/mapping.ts';
import { processRecord } from './cdc/processor.ts';

export function register(program: Command): void {
  const cdc = program
    .command('cdc')
    .description('Change data capture from product databases (Debezium).');

  cdc
    .command('validate-mapping')
    .argument('<file>', 'CDC mapping JSON file')
    .description(
      'Check a CDC mapping file; prints `file:jsonpath: message` per problem and exits 1 when invalid.',
    )
    .action((file: string) => {
      try {
        const mapping = loadMapping(file);
        process.stdout.write(`${file}: ok (${Object.keys(mapping.tables).length} tables)\n`);
      } catch (err) {
        if (!(err instanceof MappingError)) throw err;
        process.stdout.write(`${err.message}\n`);
        process.exitCode = 1;
      }
    });

  cdc
    .command('mapping-schema')
    .description('Print the JSON Schema of CDC mapping files (for editor completion and checks).')
    .action(() => {
      process.stdout.write(`${JSON.stringify(CdcMappingSchema, null, 2)}\n`);
    });

  cdc
    .command('preview')
    .argument('<mapping>', 'CDC mapping JSON file')
    .argument(
      '<records>',
      'file of Debezium change events as JSON, one per line (as the JSON converter writes them)',
    )
    .description(
      'Show the normalised events a mapping makes of sample Debezium records, one JSON line per record.',
    )
    .action(async (mappingFile: string, recordsFile: string) => {
      const mapping = loadMapping(mappingFile);
      const lines = readFileSync(recordsFile, 'utf8')
        .split('\n')
        .filter((l) => l.trim() !== '');
      for (const [i, line] of lines.entries()) {
        const outcome = await processRecord(
          {
            topic: recordsFile,
            partition: 0,
            offset: String(i),
            key: null,
            value: Buffer.from(line),
            headers: {},
            timestamp: Date.now(),
          },
          mapping,
          undefined,
          Date.now(),
        );
        process.stdout.write(`${JSON.stringify({ line: i + 1, ...outcome })}\n`);
      }
    });
}
