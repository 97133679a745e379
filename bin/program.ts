// The `lifecycle` command tree: each room registers its own subcommands.
import { Command } from 'commander';
import { register as registerRules } from '../rules/cli.ts';
import { register as registerEngine } from '../engine/cli.ts';
import { register as registerIngestion } from '../ingestion/cli.ts';
import { register as registerDelivery } from '../delivery/cli.ts';
import { register as registerAnalytics } from '../analytics/cli.ts';
import { register as registerKeys } from '../access/cli.ts';
import { register as registerGenerate } from '../devtools/cli.ts';
import { createRedisAuditLog } from '../access/index.ts';
import { register as registerRun } from './run-cli.ts';
import { register as registerOpenApi } from './openapi.ts';

export function buildProgram(): Command {
  const program = new Command('lifecycle')
    .description(
      'Real-time customer lifecycle engine: events in, rules matched, messages sent exactly once.',
    )
    .showHelpAfterError('(run with --help for usage)');
  registerRules(program);
  registerEngine(program);
  registerIngestion(program);
  // A template pushed from the command line is audited like a change through the API.
  registerDelivery(program, { auditLog: createRedisAuditLog });
  registerAnalytics(program);
  registerKeys(program);
  registerRun(program);
  registerOpenApi(program);
  registerGenerate(program);
  return program;
}
