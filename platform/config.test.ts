import { describe, expect, it } from 'vitest';
import { ConfigError, envVariables, loadConfig } from './config.ts';

describe('loadConfig', () => {
  it('applies defaults and freezes the result', () => {
    const c = loadConfig({});
    expect(c.kafka.brokers).toEqual(['127.0.0.1:19092']);
    expect(Object.isFrozen(c.kafka)).toBe(true);
  });

  it('parses lists, numbers and booleans from the environment', () => {
    const c = loadConfig({
      LC_KAFKA_BROKERS: 'a:1, b:2',
      LC_KAFKA_PARTITIONS: '3',
      LC_WEBHOOK_ALLOW_PRIVATE: 'true',
    });
    expect(c.kafka.brokers).toEqual(['a:1', 'b:2']);
    expect(c.kafka.partitions).toBe(3);
    expect(c.delivery.webhookAllowPrivate).toBe(true);
  });

  it('names every bad variable, one line each, and hides secret values', () => {
    try {
      loadConfig({
        LC_KAFKA_PARTITIONS: 'many',
        LC_REDIS_URL: 'localhost',
        LC_SIGNING_SECRET: 'short',
      });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const problems = (err as ConfigError).problems;
      expect(problems).toHaveLength(3);
      expect(problems[0]).toMatch(/^LC_KAFKA_PARTITIONS="many": /);
      expect(problems.join('\n')).toContain('LC_REDIS_URL');
      expect(problems.join('\n')).toContain('LC_SIGNING_SECRET=<redacted>');
      expect(problems.join('\n')).not.toContain('short');
    }
  });

  it('refuses the development secrets to a serving process unless NODE_ENV=development is set explicitly', () => {
    const serving = (env: Record<string, string>) => () => loadConfig(env, {}, { serving: true });
    expect(serving({})).toThrow(
      /LC_ADMIN_TOKEN: the built-in development value is refused unless NODE_ENV=development is set explicitly/,
    );
    expect(serving({})).toThrow(/LC_SIGNING_SECRET: the built-in development value/);
    expect(serving({})).toThrow(/LC_WRITE_KEYS: the built-in development value/);
    expect(serving({ NODE_ENV: 'development' })).not.toThrow();
    expect(serving({ NODE_ENV: 'test' })).not.toThrow();
    // Tools and the demo load without the serving checks.
    expect(() => loadConfig({})).not.toThrow();
  });

  it('refuses a development write key among real ones outside development', () => {
    const real = {
      LC_ADMIN_TOKEN: 'x'.repeat(24),
      LC_SIGNING_SECRET: 'a-real-signing-secret-0123',
      LC_WEBHOOK_SECRET: 'a-real-webhook-secret-0123',
      LC_INAPP_SECRET: 'a-real-inapp-secret-0123',
    };
    for (const keys of [
      'web:k3y-of-the-web-source,demo:dev-write-key:server',
      'web:dev-browser-key',
      'web:dev-browser-key:client,api:k3y-of-the-backend:server',
    ])
      expect(
        () => loadConfig({ ...real, LC_WRITE_KEYS: keys }, {}, { serving: true }),
        keys,
      ).toThrow(/LC_WRITE_KEYS: the built-in development value/);
    expect(
      loadConfig(
        { ...real, LC_WRITE_KEYS: 'web:k3y-of-the-web,api:k3y-of-the-backend:server' },
        {},
        { serving: true },
      ).auth.writeKeys,
    ).toEqual(['web:k3y-of-the-web', 'api:k3y-of-the-backend:server']);
  });

  it('refuses a short admin token outside development, and takes a long one', () => {
    const real = {
      LC_WRITE_KEYS: 'web:k3y-of-the-web-source',
      LC_SIGNING_SECRET: 'a-real-signing-secret-0123',
      LC_WEBHOOK_SECRET: 'a-real-webhook-secret-0123',
      LC_INAPP_SECRET: 'a-real-inapp-secret-0123',
    };
    expect(() =>
      loadConfig({ ...real, LC_ADMIN_TOKEN: 'short-token' }, {}, { serving: true }),
    ).toThrow(/LC_ADMIN_TOKEN: must be at least 24 characters/);
    expect(() =>
      loadConfig(
        { ...real, NODE_ENV: 'production', LC_ADMIN_TOKEN: 'short-token' },
        {},
        { serving: true },
      ),
    ).toThrow(/LC_ADMIN_TOKEN: must be at least 24 characters/);
    expect(
      loadConfig({ ...real, LC_ADMIN_TOKEN: 'x'.repeat(24) }, {}, { serving: true }).auth
        .adminToken,
    ).toHaveLength(24);
  });

  it('refuses development secrets in production', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/LC_ADMIN_TOKEN: must be set/);
  });

  it('gives in-app tokens their own secret: 16+ characters, not a development value in production, not a secret that signs anything else', () => {
    expect(loadConfig({ LC_INAPP_SECRET: 'an-inapp-secret-0123' }).auth.inappSecret).toBe(
      'an-inapp-secret-0123',
    );
    expect(() => loadConfig({ LC_INAPP_SECRET: 'too-short' })).toThrow(
      /LC_INAPP_SECRET=<redacted>/,
    );
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(
      /LC_INAPP_SECRET: must be set to a real secret/,
    );
    expect(() => loadConfig({}, {}, { serving: true })).toThrow(
      /LC_INAPP_SECRET: the built-in development value/,
    );
    expect(() =>
      loadConfig({
        LC_SIGNING_SECRET: 'one-secret-for-all-0123',
        LC_INAPP_SECRET: 'one-secret-for-all-0123',
      }),
    ).toThrow(/LC_INAPP_SECRET: must differ from LC_SIGNING_SECRET/);
    expect(() =>
      loadConfig({
        LC_EMAIL_EVENTS_SECRET: 'one-secret-for-all-0123',
        LC_INAPP_SECRET: 'one-secret-for-all-0123',
      }),
    ).toThrow(/LC_INAPP_SECRET: must differ from LC_EMAIL_EVENTS_SECRET/);
  });

  it('reads several SMS and push providers in priority order, and refuses the replaced single-provider variables naming what to set', () => {
    const c = loadConfig({
      LC_SMS_API_URLS: 'https://api.twilio.com, https://sms.backup.example',
      LC_SMS_AUTH_TOKENS: 't1,t2',
      LC_PUSH_API_URLS: 'https://fcm.googleapis.com',
      LC_SHORT_LINK_TTL: '600',
    });
    expect(c.delivery.smsApiUrls).toEqual(['https://api.twilio.com', 'https://sms.backup.example']);
    expect(c.delivery.smsAuthTokens).toEqual(['t1', 't2']);
    expect(c.delivery.pushApiUrls).toEqual(['https://fcm.googleapis.com']);
    expect(c.delivery.shortLinkTtlS).toBe(600);
    expect(() =>
      loadConfig({ LC_PUSH_API_URL: 'https://fcm.googleapis.com', LC_APNS_TOKEN: 'jwt' }),
    ).toThrow(
      /LC_PUSH_API_URL is no longer read: set LC_PUSH_API_URLS[\s\S]*LC_APNS_TOKEN is no longer read: set LC_APNS_KEY, LC_APNS_KEY_ID and LC_APNS_TEAM_ID/,
    );
    // Empty, as a compose file leaves an unset variable, is not a use of it.
    expect(() => loadConfig({ LC_SMS_API_URL: '' })).not.toThrow();
  });

  it('gives every variable a unique name and a description', () => {
    const vars = envVariables();
    expect(new Set(vars.map((v) => v.env)).size).toBe(vars.length);
    for (const v of vars) expect(v.description.length).toBeGreaterThan(5);
  });
});
