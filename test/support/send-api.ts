// Shared pieces of the send API's tests: users in the engine's state store, as the engine
// writes them, the shipped templates, and the API server on a socket with service keys.
import { silentLogger } from '../../platform/logger.ts';
import type { UserDirectory } from '../../platform/users.ts';
import { createUserDirectory, MemoryStores } from '../../engine/index.ts';
import { emptyState, serializeState } from '../../engine/core/state.ts';
import { createTemplateRenderer, type TemplateRenderer } from '../../delivery/templates/index.ts';
import { REPO_ROOT } from './stack-env.ts';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Publisher } from '../../platform/bus.ts';
import type { Config } from '../../platform/config.ts';
import { createMetricsRegistry } from '../../platform/metrics.ts';
import type { RedisDeps } from '../../platform/redis.ts';
import { createRedisApiKeyStore, generateToken } from '../../access/index.ts';
import { createApiServer } from '../../bin/api.ts';

/** The engine's in-memory state store holding these users' traits, and its directory. */
export async function memoryUsers(
  users: Record<string, Record<string, unknown>>,
): Promise<{ stores: MemoryStores; directory: UserDirectory }> {
  const stores = new MemoryStores();
  const epoch = await stores.acquire(0);
  await stores.write(
    0,
    epoch,
    Object.entries(users).map(([userId, traits], i) => {
      const state = emptyState();
      state.traits = { ...traits };
      return { userId, state: serializeState(state), offset: String(i + 1), timerIds: [] };
    }),
  );
  return { stores, directory: createUserDirectory(stores) };
}

/** The renderer over the repository's templates folder, as delivery and the API run it. */
export function shippedTemplates(): TemplateRenderer {
  return createTemplateRenderer(
    { dir: join(REPO_ROOT, 'templates'), strict: true },
    silentLogger(),
  );
}

export interface SendApi {
  app: FastifyInstance;
  baseUrl: string;
  /** A new API key of the role service: its id (the sends' origin is `api:<id>`) and bearer headers. */
  serviceKey(name: string): Promise<{ id: string; headers: Record<string, string> }>;
  close(): Promise<void>;
}

/** The API process (bin/api.ts) on an ephemeral port, its keys and state in `redis`. */
export async function startSendApi(
  config: Readonly<Config>,
  deps: { redis: RedisDeps; publisher: Publisher },
): Promise<SendApi> {
  const app = await createApiServer(config, {
    redis: deps.redis,
    publisher: deps.publisher,
    logger: silentLogger(),
    metrics: createMetricsRegistry({ defaults: false }),
  });
  const baseUrl = await app.listen({ host: '127.0.0.1', port: 0 });
  const keys = createRedisApiKeyStore(deps.redis);
  return {
    app,
    baseUrl,
    async serviceKey(name) {
      const token = generateToken();
      const key = await keys.put(
        token,
        { name, role: 'service', expiresAt: null, createdBy: 'test' },
        Date.now(),
      );
      return {
        id: key.id,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      };
    },
    close: () => app.close(),
  };
}
