import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  ConfigResourceTypes,
  ConfigSource,
  KafkaJSProtocolError,
  type ITopicConfig,
  type Kafka,
} from 'kafkajs';
import { internalTopicSpecs } from './bus.ts';
import { topics as topicNames } from './contracts.ts';
import { loadConfig } from './config.ts';
import { createTopicsWithLeaders, incomingMessage, KafkaBus } from './kafka.ts';
import { createLogger, silentLogger } from './logger.ts';

describe('Kafka consumer messages', () => {
  it('carry the key as text and as the bytes it is: binary (Avro) keys are not mangled', () => {
    // Confluent Avro keys of the rows with ids 200 and 201 (zigzag varints 0x90 0x03, 0x92 0x03).
    const k200 = Buffer.from([0, 0, 0, 0, 12, 0x90, 0x03]);
    const k201 = Buffer.from([0, 0, 0, 0, 12, 0x92, 0x03]);
    const read = (key: Buffer | null) =>
      incomingMessage('t', 2, {
        key,
        value: Buffer.from('v'),
        offset: '5',
        timestamp: '1700000000000',
        attributes: 0,
        headers: { h: Buffer.from('x') },
      });
    const [a, b] = [read(k200), read(k201)];
    expect(a.keyBytes).toEqual(k200);
    expect(b.keyBytes).toEqual(k201);
    // As UTF-8 text both become the same string: why the bytes must travel.
    expect(a.key).toBe(b.key);
    expect(read(Buffer.from('user-1'))).toEqual({
      topic: 't',
      partition: 2,
      offset: '5',
      key: 'user-1',
      keyBytes: Buffer.from('user-1'),
      value: Buffer.from('v'),
      headers: { h: 'x' },
      timestamp: 1_700_000_000_000,
    });
    expect(read(null)).toMatchObject({ key: null, keyBytes: null });
  });
});

describe('end offsets', () => {
  const bus = (
    fetchTopicOffsets: () => Promise<
      { partition: number; offset: string; high: string; low: string }[]
    >,
  ) =>
    new KafkaBus(
      { admin: () => ({ connect: async () => undefined, fetchTopicOffsets }) } as unknown as Kafka,
      silentLogger(),
    );

  it('asks again while a partition has no leader yet (a topic just created), and gives up on other errors', async () => {
    let calls = 0;
    const electing = bus(async () => {
      if (++calls < 3)
        throw Object.assign(new Error('This server is not the leader for that topic-partition'), {
          retriable: true,
        });
      return [{ partition: 0, offset: '7', high: '7', low: '0' }];
    });
    expect(await electing.endOffsets('t')).toEqual(new Map([[0, '7']]));
    expect(calls).toBe(3);

    let fatal = 0;
    const denied = bus(async () => {
      fatal++;
      throw Object.assign(new Error('Not authorized to access topics'), { retriable: false });
    });
    await expect(denied.endOffsets('t')).rejects.toThrow('Not authorized');
    expect(fatal).toBe(1);
  });
});

describe('internal topics', () => {
  const created = async (replicationFactor: number) => {
    const topics: ITopicConfig[] = [];
    const admin = {
      connect: async () => undefined,
      listTopics: async () => ['t.events'],
      createTopics: async (req: { topics: ITopicConfig[] }) => {
        topics.push(...req.topics);
        return true;
      },
    };
    const bus = new KafkaBus({ admin: () => admin } as unknown as Kafka, silentLogger(), {
      replicationFactor,
    });
    await bus.ensureTopics(internalTopicSpecs(topicNames('t'), 6));
    return topics;
  };
  const minInsync = (t: ITopicConfig) =>
    t.configEntries?.find((e) => e.name === 'min.insync.replicas')?.value;

  it.each([
    [1, '1'],
    [2, '2'],
    [3, '2'],
    [5, '2'],
  ])(
    'are created with replication factor %i and min.insync.replicas %s; existing ones are left alone',
    async (factor, expected) => {
      const topics = await created(factor);
      expect(topics.map((t) => t.topic)).toEqual([
        't.sends',
        't.sends.high',
        't.deliveries',
        't.dlq',
        't.campaigns',
        't.templates',
        't.messages',
      ]);
      for (const t of topics) {
        expect(t.replicationFactor).toBe(factor);
        expect(minInsync(t)).toBe(expected);
      }
      expect(topics.find((t) => t.topic === 't.campaigns')?.configEntries).toContainEqual({
        name: 'cleanup.policy',
        value: 'compact',
      });
      // Sends and the message log carry rendered messages of up to 2 MB plus their data.
      for (const name of ['t.sends', 't.sends.high', 't.messages'])
        expect(topics.find((t) => t.topic === name)?.configEntries).toContainEqual({
          name: 'max.message.bytes',
          value: String(8 * 1024 * 1024),
        });
    },
  );

  it('an existing topic meant for large records gets max.message.bytes raised, keeping its own settings', async () => {
    const entry = (configName: string, configValue: string, configSource: ConfigSource) => ({
      configName,
      configValue,
      configSource,
      isDefault: configSource === ConfigSource.DEFAULT_CONFIG,
      isSensitive: false,
      readOnly: false,
      configSynonyms: [],
    });
    const described: Record<string, ReturnType<typeof entry>[]> = {
      // Created before the message log: Kafka's default limit, its own min.insync and retention.
      't.messages': [
        entry('max.message.bytes', '1048588', ConfigSource.DEFAULT_CONFIG),
        entry('min.insync.replicas', '2', ConfigSource.TOPIC_CONFIG),
        entry('retention.ms', '86400000', ConfigSource.TOPIC_CONFIG),
        entry('cleanup.policy', 'delete', ConfigSource.DEFAULT_CONFIG),
      ],
      't.sends': [entry('max.message.bytes', String(8 * 1024 * 1024), ConfigSource.TOPIC_CONFIG)],
    };
    const createdBefore = described['t.messages']!;
    const asked: string[] = [];
    const altered: { name: string; configEntries: { name: string; value: string }[] }[] = [];
    let refuse = false;
    const admin = {
      connect: async () => undefined,
      listTopics: async () => ['t.events', 't.sends', 't.messages'],
      createTopics: async () => true,
      describeConfigs: async (req: { resources: { type: number; name: string }[] }) => {
        asked.push(...req.resources.map((r) => r.name));
        expect(req.resources.every((r) => r.type === ConfigResourceTypes.TOPIC)).toBe(true);
        return {
          resources: req.resources.map((r) => ({
            resourceName: r.name,
            configEntries: described[r.name] ?? [],
          })),
        };
      },
      alterConfigs: async (req: {
        resources: { name: string; configEntries: { name: string; value: string }[] }[];
      }) => {
        if (refuse) throw new Error('Cluster authorization failed');
        altered.push(...req.resources);
        // The broker then shows the topic's own settings as written.
        for (const r of req.resources)
          described[r.name] = r.configEntries.map((e) =>
            entry(e.name, e.value, ConfigSource.TOPIC_CONFIG),
          );
      },
    };
    const lines: string[] = [];
    const logger = createLogger(
      { level: 'info' },
      new Writable({
        write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString()), done()),
      }),
    );
    const bus = new KafkaBus({ admin: () => admin } as unknown as Kafka, logger);
    await bus.ensureTopics(internalTopicSpecs(topicNames('t'), 6));
    // Only existing topics that carry large records are looked at; t.sends has the limit already.
    // (t.messages twice: once more to see the broker show the new limit before going on.)
    expect(asked.sort()).toEqual(['t.messages', 't.messages', 't.sends']);
    expect(altered).toEqual([
      {
        type: ConfigResourceTypes.TOPIC,
        name: 't.messages',
        configEntries: [
          { name: 'min.insync.replicas', value: '2' },
          { name: 'retention.ms', value: '86400000' },
          { name: 'max.message.bytes', value: String(8 * 1024 * 1024) },
        ],
      },
    ]);
    expect(lines.join('')).toMatch(/raised max.message.bytes of an existing topic/);

    // Without the permission to alter, the process still starts, and the log says what to run.
    refuse = true;
    lines.length = 0;
    described['t.messages'] = createdBefore;
    await bus.ensureTopics(internalTopicSpecs(topicNames('t'), 6));
    expect(lines.join('')).toMatch(
      /kafka-configs.sh --alter --entity-type topics --entity-name t.messages --add-config max.message.bytes=8388608/,
    );
  });

  it('a replication factor of 1 is warned about at start in production, naming the variable; not in development or test', () => {
    const warnings = (env: Record<string, string>) => {
      const lines: string[] = [];
      const logger = createLogger(
        { level: 'warn' },
        new Writable({
          write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString()), done()),
        }),
      );
      KafkaBus.fromConfig(loadConfig(env), logger);
      return lines.map((l) => JSON.parse(l) as { msg: string });
    };
    const production = warnings({
      NODE_ENV: 'production',
      LC_ADMIN_TOKEN: 'x'.repeat(24),
      LC_WRITE_KEYS: 'web:key-0123456789',
      LC_SIGNING_SECRET: 'a-real-signing-secret-0123',
      LC_WEBHOOK_SECRET: 'a-real-webhook-secret-0123',
      LC_INAPP_SECRET: 'a-real-inapp-secret-0123',
    });
    expect(production).toHaveLength(1);
    expect(production[0]!.msg).toMatch(/^LC_KAFKA_REPLICATION_FACTOR=1: /);
    expect(warnings({ NODE_ENV: 'development' })).toEqual([]);
    expect(warnings({ NODE_ENV: 'test' })).toEqual([]);
    expect(
      warnings({
        NODE_ENV: 'production',
        LC_KAFKA_REPLICATION_FACTOR: '3',
        LC_ADMIN_TOKEN: 'x'.repeat(24),
        LC_WRITE_KEYS: 'web:key-0123456789',
        LC_SIGNING_SECRET: 'a-real-signing-secret-0123',
        LC_WEBHOOK_SECRET: 'a-real-webhook-secret-0123',
        LC_INAPP_SECRET: 'a-real-inapp-secret-0123',
      }),
    ).toEqual([]);
  });
});

describe('creating topics', () => {
  // The broker answers the metadata of a topic the controller has just created with
  // UNKNOWN_TOPIC_OR_PARTITION until its metadata catches up; kafkajs's own wait gives up on it.
  // kafkajs's protocol errors carry the broker's error name in `type`.
  const protocolError = (type: string, message: string) =>
    Object.assign(new KafkaJSProtocolError(message), { type });
  const unknownTopic = () =>
    protocolError('UNKNOWN_TOPIC_OR_PARTITION', 'This server does not host this topic-partition');
  const led = (topic: string, leader = 1) => ({
    name: topic,
    partitions: [0, 1].map((partitionId) => ({
      partitionId,
      leader,
      replicas: [1],
      isr: [1],
      offlineReplicas: [],
      partitionErrorCode: 0,
    })),
  });

  it('waits through a broker that does not know the new topic yet, until every partition has a leader', async () => {
    const answers: (() => unknown)[] = [
      () => {
        throw unknownTopic();
      },
      () => ({ topics: [led('t.a', -1)] }),
      () => ({ topics: [led('t.a')] }),
    ];
    let asked = 0;
    const admin = {
      createTopics: async () => {
        throw unknownTopic();
      },
      fetchTopicMetadata: async () => answers[asked++]!(),
    };
    await createTopicsWithLeaders(
      admin as never,
      { topics: [{ topic: 't.a', numPartitions: 2 }] },
      { pollMs: 1 },
    );
    expect(asked).toBe(3);
  });

  it('gives up after its wait, naming the topics, and passes any other refusal on at once', async () => {
    const never = {
      createTopics: async () => {
        throw unknownTopic();
      },
      fetchTopicMetadata: async () => {
        throw unknownTopic();
      },
    };
    await expect(
      createTopicsWithLeaders(
        never as never,
        { topics: [{ topic: 't.b', numPartitions: 2 }] },
        { timeoutMs: 20, pollMs: 1 },
      ),
    ).rejects.toThrow(/t\.b were created but showed no leader.*within 20 ms/);
    const refused = {
      createTopics: async () => {
        throw protocolError('TOPIC_AUTHORIZATION_FAILED', 'Topic authorization failed');
      },
      fetchTopicMetadata: async () => ({ topics: [] }),
    };
    await expect(
      createTopicsWithLeaders(refused as never, { topics: [{ topic: 't.c' }] }),
    ).rejects.toThrow(/Topic authorization failed/);
  });
});
