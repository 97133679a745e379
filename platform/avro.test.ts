import { describe, expect, it } from 'vitest';
import avro from 'avsc';
import { createHash } from 'node:crypto';
import { deliveryCodec, eventCodec, messageCodec, SendAvro, sendCodec } from './avro.ts';
import type { MessageRecord, NormalisedEvent, SendCommand } from './contracts.ts';

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

  it('round-trips a send pinned to a template version, with its origin', () => {
    const s: SendCommand = {
      sendId: 's2',
      ruleId: 'api',
      userId: 'u1',
      category: 'transactional',
      priority: 100,
      template: 'welcome',
      channels: ['email'],
      variant: null,
      holdout: false,
      triggeredBy: { eventId: 'req-1', eventType: 'api.send' },
      createdAt: 1,
      expiresAt: null,
      data: {},
      templateVersion: 3,
      origin: 'resend:s1',
    };
    expect(sendCodec.decode(sendCodec.encode(s), sendCodec.schemaId)).toEqual(s);
  });

  it('reads send commands written before sends had a template version and an origin', () => {
    // The schema of the first release, as records already on the sends topic were written.
    const fields = (SendAvro.schema() as { fields: { name: string }[] }).fields.filter(
      (f) => f.name !== 'templateVersion' && f.name !== 'origin' && f.name !== 'messageType',
    );
    const v1 = avro.Type.forSchema({
      type: 'record',
      name: 'Send',
      namespace: 'lifecycle.v1',
      fields,
    } as avro.Schema);
    const v1Id = createHash('sha256')
      .update(JSON.stringify(v1.schema()))
      .digest('hex')
      .slice(0, 16);
    const bytes = v1.toBuffer({
      sendId: 's0',
      ruleId: 'r1',
      userId: 'u1',
      category: 'marketing',
      priority: 50,
      template: 'welcome',
      channels: ['email'],
      variant: null,
      holdout: false,
      triggeredByEventId: 'e1',
      triggeredByEventType: 'user_registered',
      createdAt: 1,
      expiresAt: null,
      data: '{}',
      campaignId: null,
      goalEvent: null,
      goalWithinMs: null,
    });
    // The id the first release wrote in the header of every send record.
    expect(v1Id).toBe('2f3299ee09203a6c');
    const s = sendCodec.decode(bytes, v1Id);
    expect(s.sendId).toBe('s0');
    expect(s.templateVersion).toBeUndefined();
    expect(s.origin).toBeUndefined();
  });

  it('reads send commands written before sends named a message type, and round-trips one that does', () => {
    // The schema of the release that added templateVersion and origin, as its records were written.
    const fields = (SendAvro.schema() as { fields: { name: string }[] }).fields.filter(
      (f) => f.name !== 'messageType',
    );
    const v2 = avro.Type.forSchema({
      type: 'record',
      name: 'Send',
      namespace: 'lifecycle.v1',
      fields,
    } as avro.Schema);
    const v2Id = createHash('sha256')
      .update(JSON.stringify(v2.schema()))
      .digest('hex')
      .slice(0, 16);
    // The id that release wrote in the header of every send record.
    expect(v2Id).toBe('8f563a73446af955');
    const bytes = v2.toBuffer({
      sendId: 's0',
      ruleId: 'r1',
      userId: 'u1',
      category: 'marketing',
      priority: 50,
      template: 'welcome',
      channels: ['email'],
      variant: null,
      holdout: false,
      triggeredByEventId: 'e1',
      triggeredByEventType: 'user_registered',
      createdAt: 1,
      expiresAt: null,
      data: '{}',
      campaignId: null,
      goalEvent: null,
      goalWithinMs: null,
      templateVersion: 4,
      origin: 'api:k1',
    });
    const old = sendCodec.decode(bytes, v2Id);
    expect(old).toMatchObject({ sendId: 's0', templateVersion: 4, origin: 'api:k1' });
    expect(old.messageType).toBeUndefined();

    const typed: SendCommand = { ...old, messageType: 'tips' };
    expect(sendCodec.schemaId).not.toBe(v2Id);
    expect(sendCodec.decode(sendCodec.encode(typed), sendCodec.schemaId)).toEqual(typed);
  });

  it('round-trips a message-log record with its rendered content', () => {
    const m: MessageRecord = {
      id: 's1:email',
      sendId: 's1',
      userId: 'u1',
      ruleId: 'r1',
      campaignId: null,
      category: 'marketing',
      channel: 'email',
      template: 'welcome',
      templateVersion: 2,
      locale: 'de',
      to: 'x@example.com',
      subject: 'Hallo',
      html: '<p>Hallo</p>',
      text: 'Hallo',
      content: {},
      data: { user: { firstName: 'Ada' } },
      origin: null,
      ts: 5,
    };
    expect(messageCodec.decode(messageCodec.encode(m), messageCodec.schemaId)).toEqual(m);
  });
});
