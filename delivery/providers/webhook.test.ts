// The webhook provider's deadline covers name resolution: a resolver that never answers does
// not hold the send past the timeout. (Requests against a real receiver: webhook.int.test.ts.)
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../platform/logger.ts';
import type { Resolver } from './ssrf.ts';
import type { OutgoingMessage } from '../provider.ts';
import { createWebhookProvider } from './webhook.ts';

const message = (webhookUrl: string): OutgoingMessage => ({
  sendId: 'snd-dns',
  ruleId: 'r',
  category: 'transactional',
  channel: 'webhook',
  recipient: { userId: 'u1', webhookUrl, locale: 'en', timezone: 'UTC' },
  content: { title: 't', body: 'b' },
});

describe('webhook deadline', () => {
  it('answers retriable after timeoutMs when the DNS lookup never answers', async () => {
    let asked = 0;
    const resolve: Resolver = () => {
      asked++;
      return new Promise(() => undefined);
    };
    const provider = createWebhookProvider(
      { secret: 's', allowPrivate: false, timeoutMs: 200 },
      { logger: silentLogger(), resolve },
    );
    const started = Date.now();
    const result = await provider.send(message('https://hooks.example.com/in'));
    const took = Date.now() - started;
    expect(asked).toBe(1);
    expect(result).toEqual({ status: 'retriable', error: 'ETIMEDOUT: timed out after 200 ms' });
    expect(took).toBeGreaterThanOrEqual(190);
    expect(took).toBeLessThan(3000);
  }, 10_000);
});
