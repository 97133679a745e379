// The API process as it is composed from its configuration, in-process over the in-memory
// stores (the demo's wiring): which secret each credential is checked with.
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryDeliveryStores } from '../delivery/index.ts';
import {
  createMemoryInbox,
  createMemoryLiveChannel,
  signInappToken,
} from '../delivery/inapp/index.ts';
import { InMemoryBus } from '../platform/bus.ts';
import { loadConfig, type Config } from '../platform/config.ts';
import { silentLogger } from '../platform/logger.ts';
import { createMetricsRegistry } from '../platform/metrics.ts';
import { createApiServer } from './api.ts';

const SIGNING_SECRET = 'api-test-signing-secret';
const INAPP_SECRET = 'api-test-inapp-secret-0';

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

async function api(
  overrides: Record<string, unknown> = {},
): Promise<{ app: FastifyInstance; config: Readonly<Config> }> {
  const config = loadConfig(
    {},
    { 'auth.signingSecret': SIGNING_SECRET, 'auth.inappSecret': INAPP_SECRET, ...overrides },
  );
  const app = await createApiServer(config, {
    memory: {
      stores: createMemoryDeliveryStores(),
      inbox: createMemoryInbox(),
      live: createMemoryLiveChannel(),
    },
    publisher: new InMemoryBus(1).publisher(),
    logger: silentLogger(),
    metrics: createMetricsRegistry({ defaults: false }),
  });
  apps.push(app);
  return { app, config };
}

describe('in-app client tokens', () => {
  it('are checked with LC_INAPP_SECRET: a token signed with the link signing secret is refused', async () => {
    const { app } = await api();
    const inbox = (token: string) =>
      app.inject({ method: 'GET', url: `/v1/inapp/inbox?token=${encodeURIComponent(token)}` });
    const withLinkSecret = await inbox(signInappToken(SIGNING_SECRET, 'ada', { ttlMs: 60_000 }));
    expect(withLinkSecret.statusCode).toBe(401);
    expect(withLinkSecret.json()).toMatchObject({ code: 'LC_ERR_UNAUTHORIZED' });
    const withInappSecret = await inbox(signInappToken(INAPP_SECRET, 'ada', { ttlMs: 60_000 }));
    expect(withInappSecret.statusCode).toBe(200);
    expect(withInappSecret.json()).toMatchObject({ messages: [], unread: 0 });
  });
});
