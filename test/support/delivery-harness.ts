// Shared setup of the delivery integration tests: isolated topic/group/key prefixes, a
// real SMTP sink, the delivery HTTP routes on a real socket, and topic readers.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { deliveryCodec, encodeWithHeader, eventCodec, sendCodec } from '../../platform/avro.ts';
import { internalTopicSpecs, type BusConsumer } from '../../platform/bus.ts';
import { loadConfig, type Config } from '../../platform/config.ts';
import {
  topics as topicNames,
  type DeliveryOutcome,
  type NormalisedEvent,
  type SendCommand,
  type Topics,
} from '../../platform/contracts.ts';
import { adminCredential, setupHttpKit } from '../../platform/http.ts';
import { KafkaBus } from '../../platform/kafka.ts';
import { isRetriable } from '../../platform/errors.ts';
import { createLogger } from '../../platform/logger.ts';
import { createRedis, type RedisDeps } from '../../platform/redis.ts';
import { createSmtpSink, type SmtpSink } from '../../devtools/smtp-sink.ts';
import { deliveryRoutes } from '../../delivery/index.ts';
import { isolate } from './isolation.ts';

export const logger = createLogger({ level: 'warn', name: 'delivery-test' });

export async function startSink(
  opts: { http?: boolean } = {},
): Promise<SmtpSink & { dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'lc-dlv-sink-'));
  const sink = createSmtpSink({ port: 0, dir, ...(opts.http ? { httpPort: 0 } : {}) });
  await sink.start();
  return Object.assign(sink, { dir });
}

export async function stopSink(sink: SmtpSink & { dir: string }): Promise<void> {
  await sink.stop();
  await rm(sink.dir, { recursive: true, force: true });
}

/** Waits until `probe` returns a value other than undefined/false, or fails with `what`. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 30_000,
  everyMs = 100,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface Harness {
  id: string;
  /** The stack's LC_* variables plus this test's prefixes, for processes the test spawns. */
  env: Record<string, string>;
  config: Readonly<Config>;
  topics: Topics;
  bus: KafkaBus;
  redis: RedisDeps;
  app: FastifyInstance;
  baseUrl: string;
  outcomes: DeliveryOutcome[];
  events: NormalisedEvent[];
  /** Records on the DLQ topic: key, reason header and the original bytes. */
  dlq: { key: string | null; headers: Record<string, string>; value: Buffer | null }[];
  publishSend(send: SendCommand): Promise<void>;
  /**
   * A signup as the product's backend reports it (an `identify` from a server key) with the
   * address `<userId>@example.com`, on the events topic; resolves with the address.
   */
  publishSignup(userId: string, traits: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

/** Env-style overrides (dotted config paths) for a test's own isolated world. */
export async function createHarness(
  name: string,
  overrides: Record<string, unknown> = {},
): Promise<Harness> {
  const iso = isolate(name);
  const id = iso.id;
  const config0 = loadConfig(iso.env, {
    'kafka.partitions': 3,
    'delivery.quietHours': '',
    'delivery.delayPollMs': 100,
    'delivery.leaseMs': 3000,
    'delivery.retryBaseMs': 200,
    'delivery.retryMaxMs': 2000,
    ...overrides,
  });
  const redis = createRedis(config0.redis, logger);
  const bus = KafkaBus.fromConfig(config0, logger);
  const topics = topicNames(config0.kafka.topicPrefix);
  await bus.ensureTopics(internalTopicSpecs(topics, config0.kafka.partitions));
  // New topics' leaders take a moment to reach every broker's metadata on a loaded machine.
  for (const t of [topics.sends, topics.events, topics.deliveries, topics.dlq]) {
    await waitFor(
      `topic ${t} to be served`,
      async () => {
        try {
          return (
            (await bus.endOffsets(t)).size ===
            (t === topics.dlq ? Math.min(3, config0.kafka.partitions) : config0.kafka.partitions)
          );
        } catch {
          return false;
        }
      },
      30_000,
      200,
    );
  }
  // Signed links must point at this test's server: find a free port, then build the config.
  const probe = Fastify();
  await probe.listen({ port: 0, host: '127.0.0.1' });
  const port = (probe.server.address() as AddressInfo).port;
  await probe.close();
  const baseUrl = `http://127.0.0.1:${port}`;
  const config = loadConfig(iso.env, { ...flatten(config0), 'http.publicBaseUrl': baseUrl });
  const server = Fastify({ logger: false });
  await setupHttpKit(server, {
    credentials: { staff: adminCredential(config.auth.adminToken) },
    // Staff changes are audited; what they record is tested in routes.test.ts.
    audit: { append: async () => 'audit-entry' },
  });
  await server.register(deliveryRoutes, { config, redis, publisher: bus.publisher(), logger });
  await server.listen({ port, host: '127.0.0.1' });

  const outcomes: DeliveryOutcome[] = [];
  const events: NormalisedEvent[] = [];
  const dlq: Harness['dlq'] = [];
  const readers: BusConsumer[] = [
    bus.consumer({
      groupId: iso.group('outcomes'),
      topics: [topics.deliveries],
      fromBeginning: true,
      async eachBatch(batch, control) {
        for (const m of batch.messages) outcomes.push(deliveryCodec.decode(m.value!));
        await control.commit((BigInt(batch.messages.at(-1)!.offset) + 1n).toString());
      },
    }),
    bus.consumer({
      groupId: iso.group('events'),
      topics: [topics.events],
      fromBeginning: true,
      async eachBatch(batch, control) {
        for (const m of batch.messages) events.push(eventCodec.decode(m.value!));
        await control.commit((BigInt(batch.messages.at(-1)!.offset) + 1n).toString());
      },
    }),
    bus.consumer({
      groupId: iso.group('dlq'),
      topics: [topics.dlq],
      fromBeginning: true,
      async eachBatch(batch, control) {
        for (const m of batch.messages)
          dlq.push({ key: m.key, headers: m.headers, value: m.value });
        await control.commit((BigInt(batch.messages.at(-1)!.offset) + 1n).toString());
      },
    }),
  ];
  for (const r of readers) await r.start();
  const publisher = bus.publisher();
  return {
    id,
    env: {
      ...iso.env,
      LC_KAFKA_PARTITIONS: String(config.kafka.partitions),
      LC_PUBLIC_BASE_URL: baseUrl,
    },
    config,
    topics,
    bus,
    redis,
    app: server,
    baseUrl,
    outcomes,
    events,
    dlq,
    async publishSignup(userId, traits) {
      const email = `${userId}@example.com`;
      const now = Date.now();
      const event: NormalisedEvent = {
        id: `signup-${userId}`,
        userId,
        type: 'identify',
        ts: now,
        receivedAt: now,
        source: 'http:backend:server',
        properties: {},
        traits: { email, ...traits },
      };
      await publisher.publish(topics.events, [
        { key: userId, ...encodeWithHeader(eventCodec, event) },
      ]);
      return email;
    },
    async publishSend(send) {
      for (let attempt = 1; ; attempt++) {
        try {
          return await publisher.publish(topics.sends, [
            { key: send.userId, ...encodeWithHeader(sendCodec, send) },
          ]);
        } catch (err) {
          if (attempt >= 5 || !isRetriable(err)) throw err;
          await new Promise((r) => setTimeout(r, 200 * attempt));
        }
      }
    },
    async close() {
      for (const r of readers) await r.stop();
      await server.close();
      await bus.close();
      const keys = await redis.redis.keys(`${iso.redisKeyPrefix}*`);
      if (keys.length) await redis.redis.del(...keys);
      redis.redis.disconnect();
    },
  };
}

function flatten(o: object, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v))
      Object.assign(out, flatten(v as object, path));
    else out[path] = Array.isArray(v) ? [...(v as unknown[])] : v;
  }
  return out;
}

/** A send command for the shipped `welcome` template, personalised for `userId`. */
export function welcomeSend(userId: string, over: Partial<SendCommand> = {}): SendCommand {
  return {
    sendId: `welcome:${userId}:${randomUUID().slice(0, 8)}`,
    ruleId: 'welcome',
    userId,
    category: 'marketing',
    priority: 50,
    template: 'welcome',
    channels: ['email'],
    variant: null,
    holdout: false,
    triggeredBy: { eventId: `evt-${userId}`, eventType: 'user_registered' },
    createdAt: Date.now(),
    expiresAt: null,
    data: {
      user: {
        email: `${userId}@example.com`,
        firstName: `Ada-${userId}`,
        plan: 'trial',
        locale: 'en',
        timezone: 'Europe/London',
      },
      event: { type: 'user_registered', properties: {} },
      rule: { id: 'welcome' },
    },
    ...over,
  };
}
