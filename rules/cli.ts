// CLI subcommands of this room, registered on the `lifecycle` program by bin/cli.ts.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { loadConfig } from '../platform/config.ts';
import { readMessageTypes } from '../platform/message-types.ts';
import { formatRuleError } from './check.ts';
import { loadRuleSet } from './loader.ts';

/** `lifecycle rules validate [DIR]`: exit 0 with a summary, or one `file:jsonpath: message` line per error and exit 1. */
export async function validateCommand(
  dir: string | undefined,
  opts: { templates?: string; messageTypes?: string },
  out: { log(line: string): void; error(line: string): void } = console,
): Promise<number> {
  const config = dir === undefined || opts.messageTypes === undefined ? loadConfig() : null;
  const rulesDir = dir ?? config!.engine.rulesDir;
  // The declared message types, which rules name: the file given, or LC_MESSAGE_TYPES_FILE when it exists.
  const typesFile = opts.messageTypes ?? config!.delivery.messageTypesFile;
  const types =
    opts.messageTypes !== undefined || existsSync(typesFile) ? readMessageTypes(typesFile) : null;
  if (types && !types.ok) {
    for (const error of types.errors) out.error(formatRuleError(error));
    return 1;
  }
  const result = await loadRuleSet(rulesDir, {
    ...(opts.templates === undefined ? {} : { templatesDir: opts.templates }),
    ...(types ? { messageTypes: types.types } : {}),
  });
  if (!result.ok) {
    // Only error lines: other tools parse this output (DESIGN.md, CLI contract).
    for (const error of result.errors) out.error(formatRuleError(error));
    return 1;
  }
  const rs = result.ruleSet;
  const enabled = rs.rules.filter((r) => r.def.enabled).length;
  out.log(
    `${rulesDir}: ${rs.rules.length} rule${rs.rules.length === 1 ? '' : 's'} (${enabled} enabled), ${rs.segments.length} segment${rs.segments.length === 1 ? '' : 's'}, ${rs.eventTypes.size} event types; valid (version ${rs.version})`,
  );
  return 0;
}

export function register(program: Command): void {
  const rules = program.command('rules').description('Work with lifecycle rule files.');
  rules
    .command('validate')
    .description(
      'Check rule and segment files; prints one `file:jsonpath: message` line per error and exits 1 when any.',
    )
    .argument('[dir]', 'rules folder (default: LC_RULES_DIR, rules/examples)')
    .option(
      '--templates <dir>',
      'also check that every template a rule names exists in this folder',
    )
    .option(
      '--message-types <file>',
      'the message types file rules name (default: LC_MESSAGE_TYPES_FILE, rules/message-types.json, when it exists)',
    )
    .action(
      async (dir: string | undefined, opts: { templates?: string; messageTypes?: string }) => {
        process.exitCode = await validateCommand(dir, opts);
      },
    );
}
