// `lifecycle templates versions|push`: the managed templates store from the command line, for
// teams that keep templates in git and want a version made on their terms (a CI step after a
// merge) rather than at the next start. They read the templates topic of LC_KAFKA_BROKERS /
// LC_TOPIC_PREFIX and number versions through LC_REDIS_URL, as the API does; a push is in the
// audit log as made by `cli:<OS user>` with the role admin, as `lifecycle keys` changes are.
import { userInfo } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { loadConfig, type Config } from '../../platform/config.ts';
import { topics } from '../../platform/contracts.ts';
import { errorMessage, LifecycleError } from '../../platform/errors.ts';
import type { AuditRecord, AuditSink } from '../../platform/http.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { silentLogger } from '../../platform/logger.ts';
import { openRedis, type RedisDeps } from '../../platform/redis.ts';
import { createTemplateRenderer, type TemplateRenderer } from './index.ts';
import { readTemplateFolder } from './loader.ts';
import {
  createRedisCoordinator,
  createTemplateStore,
  type TemplateStore,
} from './store.ts';

export interface TemplatesCliDeps {
  /** The audit log of the deployment (access/, wired by bin): a push is a change like any other. */
  auditLog?: (redis: RedisDeps) => AuditSink;
}

interface Opened {
  config: Readonly<Config>;
  store: TemplateStore;
  renderer: TemplateRenderer;
  redis: RedisDeps;
}

async function withStore(run: (o: Opened) => Promise<number>): Promise<void> {
  let redis: RedisDeps | undefined;
  let bus: KafkaBus | undefined;
  let store: TemplateStore | undefined;
  try {
    const config = loadConfig();
    const logger = silentLogger();
    redis = await openRedis(config, logger);
    bus = KafkaBus.fromConfig(config, logger);
    const t = topics(config.kafka.topicPrefix);
    store = createTemplateStore(
      { topics: t },
      { bus, publisher: bus.publisher(), coordinator: createRedisCoordinator(redis), logger },
    );
    await store.start();
    const renderer = createTemplateRenderer(
      { dir: config.delivery.templatesDir, store, defaultTimezone: config.delivery.defaultTimezone },
      logger,
    );
    process.exitCode = await run({ config, store, renderer, redis });
  } catch (err) {
    const code = err instanceof LifecycleError ? `${err.code}: ` : '';
    process.stderr.write(`${code}${errorMessage(err)}\n`);
    process.exitCode = 1;
  } finally {
    await store?.stop().catch(() => undefined);
    await bus?.close().catch(() => undefined);
    redis?.redis.disconnect();
  }
}

const published = (store: TemplateStore, name: string): string[] =>
  Object.entries(store.publication(name)?.channels ?? {}).flatMap(([channel, byLocale]) =>
    Object.entries(byLocale ?? {}).map(([locale, v]) => `${channel}/${locale}: v${v}`),
  );

export function registerTemplatesStore(templates: Command, deps: TemplatesCliDeps = {}): void {
  templates
    .command('versions')
    .description(
      'The versions of a managed template (number, time, author, message, hash) and what is published per channel and locale.',
    )
    .argument('<name>', 'template name')
    .action((name: string) =>
      withStore(async ({ store }) => {
        const versions = store.versions(name);
        if (versions.length === 0) {
          process.stderr.write(
            `no template "${name}" in the store (have: ${store.names().join(', ') || 'none'})\n`,
          );
          return 1;
        }
        for (const v of versions)
          process.stdout.write(
            `v${v.version}\t${v.createdAt}\t${v.author}\t${v.hash.slice(0, 19)}\t${v.message}\n`,
          );
        process.stdout.write(`published: ${published(store, name).join(', ') || 'nothing'}\n`);
        return 0;
      }),
    );

  templates
    .command('push')
    .description(
      'Save a template folder as a new version of the managed template of that name, checked as the API checks a save (one line per problem, exit 1). Not published unless --publish.',
    )
    .argument('<name>', 'template name (its folder under --dir)')
    .requiredOption('-m, --message <text>', 'why: shown in the version list')
    .option('--dir <dir>', 'templates folder (default: LC_TEMPLATES_DIR or ./templates)')
    .option('--publish', 'publish the new version for every channel it has, every locale')
    .action((name: string, opts: { message: string; dir?: string; publish?: boolean }) =>
      withStore(async ({ config, store, renderer, redis }) => {
        const files = readTemplateFolder(join(opts.dir ?? config.delivery.templatesDir, name));
        const check = renderer.checkFiles(name, files);
        for (const e of check.warnings) process.stderr.write(`warning: ${e.file}: ${e.message}\n`);
        if (check.errors.length > 0) {
          for (const e of check.errors) process.stdout.write(`${e.file}: ${e.message}\n`);
          return 1;
        }
        const actor = `cli:${userInfo().username}`;
        const audit = deps.auditLog?.(redis);
        const record = (r: Pick<AuditRecord, 'action' | 'before' | 'after'>) =>
          audit?.append({
            actor,
            actorName: actor,
            role: 'admin',
            target: `template:${name}`,
            requestId: null,
            at: new Date().toISOString(),
            ...r,
          });
        const before = store.latest(name);
        const saved = await store.save({ name, files, author: actor, message: opts.message });
        await record({
          action: 'template.save',
          before: before ? { version: before.version, hash: before.hash } : null,
          after: { version: saved.version, hash: saved.hash, message: saved.message },
        });
        process.stdout.write(`${name} v${saved.version} saved (${saved.hash})\n`);
        if (opts.publish) {
          const change = await store.publish({ name, version: saved.version, actor });
          await record({
            action: 'template.publish',
            before: { published: change.before },
            after: { version: saved.version, hash: saved.hash, published: change.after },
          });
          process.stdout.write(`published: ${published(store, name).join(', ')}\n`);
        }
        return 0;
      }),
    );
}
