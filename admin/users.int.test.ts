// The user lookup as support uses it, against `lifecycle run all` on the real stack: an app
// identifies a user with an email and a phone over the Segment API and signs them up; the
// engine sends the welcome email and schedules the delayed rules; support opts the user in to
// marketing through the preference API; the mail provider reports a hard bounce of the
// welcome email; the trial-ending rule lands an in-app message. Support finds the user by
// email and by phone and sees every section; after the product database erases the user,
// nothing is found, and nothing of theirs is left in the contact index or the history.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedisApiKeyStore, generateToken } from '../access/index.ts';
import { encodeWithHeader, eventCodec } from '../platform/avro.ts';
import { topics } from '../platform/contracts.ts';
import { KafkaBus } from '../platform/kafka.ts';
import { createKeySpace } from '../platform/keys.ts';
import { silentLogger } from '../platform/logger.ts';
import { createRedis, type RedisDeps } from '../platform/redis.ts';
import { assignExperiment, loadRuleSet } from '../rules/index.ts';
import { signWebhook } from '../delivery/providers/webhook.ts';
import { isolate, type Isolation } from '../test/support/isolation.ts';
import { REPO_ROOT } from '../test/support/stack-env.ts';
import { smtpSinkClient } from '../test/support/smtp.ts';
import { waitFor } from '../test/support/wait.ts';
import { freePort } from '../test/support/ports.ts';

const EVENTS_SECRET = 'lookup-test-email-events-secret';
const DAY = 24 * 3600_000;

describe('support looks a user up (lifecycle run all)', () => {
  let iso: Isolation;
  let child: ChildProcess;
  let output = '';
  let ingestUrl: string;
  let apiUrl: string;
  let redis: RedisDeps;
  let support: string;

  beforeAll(async () => {
    iso = isolate('lookup');
    const [ingestPort, apiPort] = [await freePort(), await freePort()];
    ingestUrl = `http://127.0.0.1:${ingestPort}`;
    apiUrl = `http://127.0.0.1:${apiPort}`;
    redis = createRedis(iso.config().redis, silentLogger());
    support = generateToken();
    await createRedisApiKeyStore(redis).put(
      support,
      { name: 'support desk', role: 'support', expiresAt: null, createdBy: 'test' },
      Date.now(),
    );
    child = spawn(path.join(REPO_ROOT, 'bin/lifecycle'), ['run', 'all'], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        ...iso.env,
        LC_INGEST_PORT: String(ingestPort),
        LC_API_PORT: String(apiPort),
        LC_PUBLIC_BASE_URL: apiUrl,
        LC_KAFKA_PARTITIONS: '3',
        LC_QUIET_HOURS: '',
        LC_EMAIL_EVENTS_SECRET: EVENTS_SECRET,
        LC_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    await waitFor(
      async () => (await fetch(`${ingestUrl}/health`)).ok && (await fetch(`${apiUrl}/health`)).ok,
      { timeout: 90_000, message: 'lifecycle run all did not become healthy' },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n--- process output ---\n${output.slice(-4000)}`);
    });
  });

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    if (redis) {
      const own = await redis.redis.keys(`${iso.redisKeyPrefix}*`);
      if (own.length > 0) await redis.redis.del(...own);
      redis.redis.disconnect();
    }
  });

  const staff = (p: string, init: RequestInit = {}) =>
    fetch(`${apiUrl}${p}`, {
      ...init,
      headers: {
        authorization: `Bearer ${support}`,
        ...(init.body ? { 'content-type': 'application/json' } : {}),
        ...(init.headers as Record<string, string> | undefined),
      },
    });
  const ingest = (p: string, body: object) =>
    fetch(`${ingestUrl}${p}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Basic ${Buffer.from('dev-write-key:').toString('base64')}`,
      },
      body: JSON.stringify(body),
    });
  const search = async (q: string) => {
    const res = await staff(`/v1/users?q=${encodeURIComponent(q)}`);
    expect(res.status).toBe(200);
    return ((await res.json()) as { users: { userId: string; matched: string[] }[] }).users;
  };

  it('finds the user by email and phone and shows every section; after erasure nothing is found', async () => {
    // A user the trial-ending rule does not hold out, so its in-app message is really sent.
    const loaded = await loadRuleSet(path.join(REPO_ROOT, 'rules/examples'));
    if (!loaded.ok) throw new Error('the example rules do not load');
    const trialEnding = loaded.ruleSet.rules.find((r) => r.def.id === 'trial-ending')!.def;
    let n = 0;
    while (assignExperiment(trialEnding, `grace-${iso.id}-${n}`).holdout) n++;
    const userId = `grace-${iso.id}-${n}`;
    const email = `Grace.${iso.id}@Example.com`;
    const registeredAt = Date.now();

    expect(
      (
        await ingest('/v1/identify', {
          userId,
          messageId: `${userId}-identify`,
          traits: { email, phone: '+44 20 7946 0958', firstName: 'Grace', plan: 'trial' },
        })
      ).status,
    ).toBe(200);
    expect(
      (
        await ingest('/v1/track', {
          userId,
          messageId: `${userId}-registered`,
          event: 'user_registered',
          timestamp: new Date(registeredAt).toISOString(),
        })
      ).status,
    ).toBe(200);
    const [welcome] = await smtpSinkClient().waitForCount({ to: email.toLowerCase() }, 1, 60_000);
    expect(welcome!.subject).toMatch(/^Welcome/);

    // Support opts the user in to marketing on email and in-app, as the user asked on the phone.
    const patched = await staff(`/v1/users/${encodeURIComponent(userId)}/preferences`, {
      method: 'PATCH',
      body: JSON.stringify({
        consents: {
          marketing: {
            email: { granted: true, source: 'support_call' },
            inapp: { granted: true, source: 'support_call' },
          },
        },
      }),
    });
    expect(patched.status).toBe(200);

    // The mail provider reports that the welcome email bounced: the address is suppressed.
    const bounce = JSON.stringify({
      events: [
        {
          type: 'bounce',
          bounceType: 'hard',
          messageId: `<${welcome!.messageId}>`,
          recipient: email.toLowerCase(),
          reason: '550 5.1.1 user unknown',
        },
      ],
    });
    const hook = await fetch(`${apiUrl}/v1/webhooks/email`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-lc-signature': signWebhook(EVENTS_SECRET, bounce, Math.floor(Date.now() / 1000)),
      },
      body: bounce,
    });
    expect(await hook.json()).toMatchObject({ applied: 1 });

    // Billing says the trial ends soon: the in-app message lands (the email is suppressed).
    expect(
      (
        await ingest('/v1/track', {
          userId,
          messageId: `${userId}-trial-ends`,
          event: 'trial_ends_soon',
          properties: { daysLeft: 3 },
        })
      ).status,
    ).toBe(200);

    interface Lookup {
      profile: { userId: string; traits: Record<string, unknown>; stats: object };
      timers: { pending: { ruleId: string; fires: string; dueAt: number; trigger: object }[] };
      preferences: { consents: object; history: Record<string, unknown>[] };
      suppressions: { deleted: unknown; channels: Record<string, Record<string, unknown>> };
      inbox: { unread: number; messages: Record<string, unknown>[] };
      links: { messages: string };
    }
    const lookup = await waitFor(
      async () => {
        const res = await staff(`/v1/users/${encodeURIComponent(userId)}`);
        if (res.status !== 200) return undefined;
        const body = (await res.json()) as Lookup;
        return body.inbox.messages?.length > 0 ? body : undefined;
      },
      { timeout: 60_000, message: 'the in-app message did not reach the lookup' },
    );

    // Found by email whatever its case, and by phone however it is written.
    expect(await search(email.toUpperCase())).toEqual([
      expect.objectContaining({ userId, matched: ['email'] }),
    ]);
    expect((await search('0044 (20) 7946-0958')).map((u) => [u.userId, u.matched])).toEqual([
      [userId, ['phone']],
    ]);
    expect((await search(userId)).map((u) => u.userId)).toEqual([userId]);

    expect(lookup.profile).toMatchObject({
      userId,
      traits: { email, phone: '+44 20 7946 0958', plan: 'trial' },
      stats: { user_registered: { count: 1 }, trial_ends_soon: { count: 1 } },
    });
    const dueOf = (ruleId: string) => lookup.timers.pending.find((t) => t.ruleId === ruleId)?.dueAt;
    expect(lookup.timers.pending.map((t) => t.ruleId).sort()).toEqual(
      expect.arrayContaining(['trial-activation-day3', 'trial-ending-fallback']),
    );
    expect(dueOf('trial-activation-day3')).toBe(registeredAt + 3 * DAY);
    expect(dueOf('trial-ending-fallback')).toBe(registeredAt + 11 * DAY);
    expect(lookup.timers.pending[0]).toMatchObject({
      fires: 'rule',
      trigger: { type: 'user_registered', id: expect.any(String) },
    });
    expect(lookup.preferences.consents).toMatchObject({
      marketing: {
        email: { granted: true, source: 'support_call' },
        inapp: { granted: true, source: 'support_call' },
      },
    });
    expect(lookup.preferences.history).toHaveLength(2);
    for (const change of lookup.preferences.history)
      expect(change).toMatchObject({
        kind: 'consent',
        source: 'support_call',
        via: 'admin_api',
        by: { actor: expect.stringMatching(/^key_/), role: 'support' },
      });
    expect(lookup.suppressions.channels.email).toMatchObject({
      reason: 'hard_bounce',
      address: email.toLowerCase(),
    });
    expect(lookup.suppressions.deleted).toBeNull();
    expect(lookup.inbox.unread).toBe(1);
    expect(lookup.inbox.messages[0]).toMatchObject({
      ruleId: 'trial-ending',
      category: 'marketing',
      readAt: null,
    });
    expect(lookup.links.messages).toBe(`/v1/messages?userId=${encodeURIComponent(userId)}`);

    // The product database deletes the user (CDC): nothing is found any more.
    const bus = KafkaBus.fromConfig(iso.config(), silentLogger());
    try {
      const deletion = {
        id: `${userId}-deleted`,
        userId,
        type: 'user_deleted',
        ts: Date.now(),
        receivedAt: Date.now(),
        source: 'cdc:test',
        properties: {},
      };
      await bus
        .publisher()
        .publish(topics(iso.topicPrefix).events, [
          { key: userId, ...encodeWithHeader(eventCodec, deletion) },
        ]);
    } finally {
      await bus.close();
    }
    await waitFor(
      async () => (await staff(`/v1/users/${encodeURIComponent(userId)}`)).status === 404,
      { timeout: 60_000, message: 'the erased user was still looked up' },
    );
    expect(await search(email)).toEqual([]);
    expect(await search('+442079460958')).toEqual([]);
    expect(await search(userId)).toEqual([]);
    // Not only hidden: the index holds nothing of the user, and the preference history is gone.
    const keys = createKeySpace(iso.redisKeyPrefix);
    const events = topics(iso.topicPrefix).events;
    for (let p = 0; p < 3; p++) {
      const filed = await redis.redis.zrange(keys.partition(events, p, 'contacts'), 0, -1);
      expect(filed.filter((m) => m.endsWith(`\n${userId}`))).toEqual([]);
    }
    await waitFor(
      async () => (await redis.redis.exists(keys.user(userId, 'dlv:consent-log'))) === 0,
      { timeout: 30_000, message: 'the preference history outlived the erasure' },
    );
  });
});
