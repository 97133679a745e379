import { describe, expect, it } from 'vitest';
import { testContext } from '../../test/support/delivery-context.ts';
import { MESSAGE_RECORD_BUDGET, messageRecord, recipientAddress } from './message-log.ts';

describe('message-log record', () => {
  const rendered = (html: string, data: Record<string, unknown>) => {
    const ctx = testContext({ send: { data } });
    ctx.message = {
      sendId: ctx.send.sendId,
      ruleId: ctx.send.ruleId,
      category: ctx.send.category,
      channel: 'email',
      recipient: ctx.recipient,
      content: { subject: 'Hi', html, text: 'Hi' },
    };
    ctx.rendered = { templateVersion: 7, locale: 'de' };
    return ctx;
  };

  it('takes the template version and locale the render stage used', () => {
    const logged = messageRecord(rendered('<p>Hi</p>', { user: { firstName: 'Ada' } }), 42);
    expect(logged?.omitted).toEqual([]);
    expect(logged?.record).toMatchObject({
      templateVersion: 7,
      locale: 'de',
      to: 'ada@example.com',
      ts: 42,
      data: { user: { firstName: 'Ada' } },
      content: {},
    });
  });

  it('is null for a send that was not rendered', () => {
    expect(messageRecord(testContext(), 1)).toBeNull();
  });

  it('leaves the data out, then the text, when the record would not fit the topic, and says so', () => {
    const html = 'h'.repeat(3 * 1024 * 1024);
    const data = { blob: 'd'.repeat(MESSAGE_RECORD_BUDGET - html.length) };
    const logged = messageRecord(rendered(html, data), 1)!;
    expect(logged.omitted).toEqual(['data']);
    expect(logged.record.data).toEqual({});
    expect(logged.record.content).toEqual({ omitted: ['data'] });
    expect(logged.record.html).toBe(html);
    expect(logged.record.text).toBe('Hi');

    const ctx = rendered(html, data);
    ctx.message!.content.text = 't'.repeat(MESSAGE_RECORD_BUDGET - html.length + 1);
    const both = messageRecord(ctx, 1)!;
    expect(both.omitted).toEqual(['data', 'text']);
    expect(both.record.text).toBeNull();
  });

  it('names where each channel went', () => {
    const r = {
      userId: 'u1',
      email: 'a@example.com',
      phone: '+1555',
      deviceTokens: ['t1', 't2'],
      webhookUrl: 'https://h.example.com/x',
      locale: 'en',
      timezone: 'UTC',
    };
    expect(recipientAddress(r, 'email')).toBe('a@example.com');
    expect(recipientAddress(r, 'sms')).toBe('+1555');
    expect(recipientAddress(r, 'push')).toBe('t1,t2');
    expect(recipientAddress(r, 'webhook')).toBe('https://h.example.com/x');
    expect(recipientAddress(r, 'inapp')).toBe('u1');
    expect(recipientAddress({ userId: 'u1', locale: 'en', timezone: 'UTC' }, 'push')).toBeNull();
  });
});
