// CLI subcommands of this room, registered on the `lifecycle` program by bin/cli.ts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { CHANNELS, type Channel } from '../platform/contracts.ts';
import { loadConfig } from '../platform/config.ts';
import { silentLogger } from '../platform/logger.ts';
import { errorMessage } from '../platform/errors.ts';
import { signInappToken } from './inapp/token.ts';
import { createTemplateRenderer } from './templates/index.ts';
import { readTemplateFolder } from './templates/loader.ts';
import { previewData } from './templates/routes.ts';
import { registerTemplatesStore, type TemplatesCliDeps } from './templates/cli.ts';

function templatesDir(dir: string | undefined): string {
  return dir ?? loadConfig().delivery.templatesDir;
}

function readJsonObject(source: string, what: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(source);
  } catch (err) {
    throw new Error(`${what} is not valid JSON: ${errorMessage(err)}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new Error(`${what} must be a JSON object`);
  return parsed as Record<string, unknown>;
}

export function register(program: Command, deps: TemplatesCliDeps = {}): void {
  const templates = program
    .command('templates')
    .description(
      'Check and preview the templates folder; list and push versions of the managed templates.',
    );

  templates
    .command('validate')
    .description(
      'Check every template: syntax, partials, layouts, and a strict render against its sample.json. One line per problem `file: message`; exit 1 when any.',
    )
    .argument('[dir]', 'templates folder (default: LC_TEMPLATES_DIR or ./templates)')
    .action((dir: string | undefined) => {
      const renderer = createTemplateRenderer(
        { dir: templatesDir(dir), defaultLocale: 'en' },
        silentLogger(),
      );
      const errors = renderer.validate();
      for (const e of errors) process.stdout.write(`${e.file}: ${e.message}\n`);
      if (errors.length > 0) {
        process.exitCode = 1;
        return;
      }
      process.stderr.write(`${renderer.names().length} templates OK\n`);
    });

  templates
    .command('preview')
    .description(
      'Render a template for one channel and locale, with its sample data overlaid by --data / --user-file.',
    )
    .argument('<name>', 'template name (its folder under the templates folder)')
    .option('--channel <channel>', `one of ${CHANNELS.join(', ')}`, 'email')
    .option(
      '--locale <locale>',
      'recipient locale; falls back to its language, then the default',
      'en',
    )
    .option(
      '--data <json>',
      'data merged over sample.json, e.g. \'{"user":{"firstName":"Ada"}}\' changes only the first name',
    )
    .option(
      '--user-file <file>',
      'JSON file with the user (traits) to render for; replaces the sample user',
    )
    .option('--dir <dir>', 'templates folder (default: LC_TEMPLATES_DIR or ./templates)')
    .option('--html', 'print only the HTML part of an email')
    .action(
      (
        name: string,
        opts: {
          channel: string;
          locale: string;
          data?: string;
          userFile?: string;
          dir?: string;
          html?: boolean;
        },
      ) => {
        if (!(CHANNELS as readonly string[]).includes(opts.channel)) {
          process.stderr.write(`unknown channel "${opts.channel}" (use ${CHANNELS.join(', ')})\n`);
          process.exitCode = 2;
          return;
        }
        const dir = templatesDir(opts.dir);
        const renderer = createTemplateRenderer({ dir, defaultLocale: 'en' }, silentLogger());
        if (!renderer.has(name)) {
          process.stderr.write(
            `template "${name}" not found in ${dir} (have: ${renderer.names().join(', ')})\n`,
          );
          process.exitCode = 1;
          return;
        }
        try {
          const data = previewData(
            readTemplateFolder(join(dir, name)),
            opts.data ? readJsonObject(opts.data, '--data') : {},
          );
          // A real user's traits replace the sample user whole: a trait they lack must show up as
          // the missing variable it would be at send time, not be filled in from the sample.
          if (opts.userFile)
            data.user = readJsonObject(readFileSync(opts.userFile, 'utf8'), opts.userFile);
          const out = renderer.render(name, opts.channel as Channel, opts.locale, data);
          if (opts.html) {
            process.stdout.write(`${out.html ?? ''}\n`);
            return;
          }
          const lines: string[] = [];
          if (out.subject !== undefined) lines.push(`Subject: ${out.subject}`);
          if (out.title !== undefined) lines.push(`Title: ${out.title}`);
          if (out.url !== undefined) lines.push(`URL: ${out.url}`);
          if (out.body !== undefined) lines.push('', out.body);
          if (out.text !== undefined) lines.push('', '----- text -----', out.text.trimEnd());
          if (out.html !== undefined) lines.push('', '----- html -----', out.html.trimEnd());
          if (out.data !== undefined)
            lines.push('', '----- data -----', JSON.stringify(out.data, null, 2));
          process.stdout.write(`${lines.join('\n')}\n`);
        } catch (err) {
          process.stderr.write(`${errorMessage(err)}\n`);
          process.exitCode = 1;
        }
      },
    );

  registerTemplatesStore(templates, deps);

  program
    .command('inapp-token')
    .description(
      'Mint an in-app client token for a user (what the product backend does), to try the WebSocket gateway and inbox.',
    )
    .argument('<userId>')
    .option('--ttl <minutes>', 'validity in minutes', '60')
    .action((userId: string, opts: { ttl: string }) => {
      const minutes = Number(opts.ttl);
      if (!Number.isFinite(minutes) || minutes <= 0) {
        process.stderr.write('--ttl must be a positive number of minutes\n');
        process.exitCode = 2;
        return;
      }
      process.stdout.write(
        `${signInappToken(loadConfig().auth.inappSecret, userId, { ttlMs: minutes * 60_000 })}\n`,
      );
    });
}
