import { describe, expect, it } from 'vitest';
import { deliveryCodec, eventCodec, sendCodec } from './avro.ts';
import type { NormalisedEvent, SendCommand } from './contracts.ts';

describe('avro codecs', () => {
  it('round-trips an event with free-form properties and traits', () => {
    const e: NormalisedEvent = {
      id: 'm1',
      userId: 'u1',
      type: 'Feature Used',
      ts: 1_700_000_000_000,
      receivedAt: 1_700_000_000_100,
      source: 'http:web',
      properties: { name: 'export', n: 2, nested: { ok: true } },
      traits: { plan: 'trial' },
    };
    expect(eventCodec.decode(eventCodec.encode(e), eventCodec.schemaId)).toEqual(e);
  });

  it('round-trips a send command', () => {
    const s: SendCommand = {
      sendId: 's1',
      ruleId: 'r1',
      userId: 'u1',
      category: 'marketing',
      priority: 50,
      template: 't',
      channels: ['email', 'inapp'],
      variant: 'a',
      holdout: false,
      triggeredBy: { eventId: 'e1', eventType: 'user_registered' },
      createdAt: 1,
      expiresAt: null,
      data: { user: { email: 'x@example.com' } },
      goal: { event: 'subscription_started', withinMs: 604_800_000 },
    };
    expect(sendCodec.decode(sendCodec.encode(s))).toEqual(s);
  });

  it('rejects bytes of another schema with a decode error', () => {
    const bytes = deliveryCodec.encode({
      id: 'd',
      sendId: 's',
      ruleId: 'r',
      userId: 'u',
      channel: 'email',
      status: 'sent',
      reason: null,
      provider: 'smtp',
      attempt: 1,
      ts: 1,
      variant: null,
      holdout: false,
    });
    expect(() => eventCodec.decode(Buffer.from('{"not":"avro"}'))).toThrow(/not a valid/);
    expect(() => sendCodec.decode(bytes, deliveryCodec.schemaId)).toThrow(/unknown writer schema/);
  });
});
