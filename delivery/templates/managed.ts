// Managed templates as one unit for a process that renders: the store read from the
// templates topic, the renderer over it (layouts and partials from the folder), and the
// seeding of the folder's templates into the store, at start and after each edit of the
// folder. Teams that keep templates in git keep working: a template folder whose files
// changed becomes a new version (published at once unless LC_TEMPLATES_PUBLISH_FILES=false);
// a folder that does not pass `templates validate` is not stored, and says why in the log.
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Bus, Publisher } from '../../platform/bus.ts';
import type { Topics } from '../../platform/contracts.ts';
import { LifecycleError } from '../../platform/errors.ts';
import type { Registry } from '../../platform/metrics.ts';
import { isUnreachable, whenReady, type StartRetry } from '../../platform/ready.ts';
import { createTemplateRenderer, type TemplateRenderer } from './index.ts';
import { readTemplateFolder, templateFolders } from './loader.ts';
import { contentHash } from './versions.ts';
import {
  createTemplateStore,
  type TemplateCoordinator,
  type TemplateStore,
} from './store.ts';

export interface ManagedTemplatesConfig {
  /** LC_TEMPLATES_DIR: layouts, partials, and the templates that seed the store. */
  dir: string;
  defaultTimezone: string;
  /** LC_TEMPLATES_PUBLISH_FILES. */
  publishFiles: boolean;
  topics: Topics;
  /** Seed the folder again when its files change (long-running processes). */
  watch?: boolean;
  /** Backoff while Kafka does not answer at start (default: platform/ready.ts's). */
  startRetry?: StartRetry;
}

export interface ManagedTemplatesDeps {
  bus: Pick<Bus, 'consumer' | 'endOffsets' | 'ensureTopics'>;
  publisher: Publisher;
  coordinator: TemplateCoordinator;
  logger: Logger;
  registry?: Registry;
}

export interface ManagedTemplates {
  store: TemplateStore;
  renderer: TemplateRenderer;
  /** Reads the store to the end of the topic, then seeds the folder: resolves once ready to render. */
  start(): Promise<void>;
  stop(): Promise<void>;
  health(): ReturnType<TemplateStore['health']>;
  /** Seeds the folder's templates into the store now (what a start and a folder edit do). */
  seedFolder(): Promise<void>;
}

export function createManagedTemplates(
  config: ManagedTemplatesConfig,
  deps: ManagedTemplatesDeps,
): ManagedTemplates {
  const log = deps.logger.child({ component: 'templates' });
  const store = createTemplateStore(
    { topics: config.topics },
    {
      bus: deps.bus,
      publisher: deps.publisher,
      coordinator: deps.coordinator,
      logger: deps.logger,
      ...(deps.registry ? { registry: deps.registry } : {}),
    },
  );
  let started = false;
  let seeding: Promise<void> = Promise.resolve();

  async function seedOnce(): Promise<void> {
    const folders: { name: string; files: Record<string, string> }[] = [];
    for (const name of templateFolders(config.dir)) {
      const files = readTemplateFolder(join(config.dir, name));
      const pub = store.publication(name);
      // Files stored before need no check (a restart reads each folder, rarely a new one).
      if (store.seeded(name, contentHash(files)) && pub && Object.keys(pub.channels).length > 0)
        continue;
      // The checks of `templates validate`: files that fail them are not made a version.
      const { errors } = renderer.checkFiles(name, files, { variables: false });
      if (errors.length > 0) {
        log.warn(
          { template: name, errors: errors.map((e) => `${e.file}: ${e.message}`) },
          'template folder does not validate; not stored (the store keeps its versions)',
        );
        continue;
      }
      folders.push({ name, files });
    }
    await store.seed(folders, { publishChanged: config.publishFiles });
  }

  const seedFolder = (): Promise<void> => {
    seeding = seeding.catch(() => undefined).then(seedOnce);
    return seeding;
  };

  const renderer = createTemplateRenderer(
    {
      dir: config.dir,
      strict: true,
      defaultTimezone: config.defaultTimezone,
      watch: config.watch ?? false,
      store,
      onReload: () => {
        if (!started) return;
        seedFolder().catch((err: unknown) =>
          log.error({ err }, 'seeding the edited templates folder failed; retried on the next edit'),
        );
      },
    },
    deps.logger,
  );

  return {
    store,
    renderer,
    async start() {
      // A broker away at start (a deploy bringing everything up at once, a restart) is waited
      // for, as `lifecycle run` waits for Kafka: nothing renders before the store is read and
      // seeded, so a send never meets a store that is still empty.
      await whenReady({
        what: 'Kafka (templates topic)',
        at: config.topics.templates,
        logger: log,
        retry: config.startRetry,
        meanwhile: 'before rendering any message',
        waitable: (err) =>
          isUnreachable(err) || (err instanceof LifecycleError && err.retriable),
        attempt: async () => {
          try {
            await store.start();
            await seedFolder();
          } catch (err) {
            await store.stop().catch(() => undefined);
            throw err;
          }
        },
      });
      started = true;
    },
    async stop() {
      started = false;
      renderer.close();
      await seeding.catch(() => undefined);
      await store.stop();
    },
    health: () => store.health(),
    seedFolder,
  };
}
