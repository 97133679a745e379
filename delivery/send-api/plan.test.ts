import { afterAll, describe, expect, it } from 'vitest';
import type { SendCommand } from '../../platform/contracts.ts';
import { memoryUsers, shippedTemplates } from '../../test/support/send-api.ts';
import { apiSendId, closeNames, planSend, type RequestIdentity } from './plan.ts';
import { checkSendMessage, isRefusal, recipientIdOf, type CheckedMessage } from './request.ts';

const templates = shippedTemplates();
afterAll(() => templates.close());

const ada = {
  email: 'ada@example.com',
  firstName: 'Ada',
  plan: 'pro',
  locale: 'de',
  deviceTokens: ['tok-1'],
};
const identity: RequestIdentity = {
  principal: 'key_backend',
  idempotencyKey: 'order-placed:ada:o-1',
  requestId: 'req-1',
};

async function plan(message: unknown, id: RequestIdentity = identity, index = 0) {
  const { directory } = await memoryUsers({ ada });
  const checked = checkSendMessage(message, { maxDataBytes: 10_000 });
  if (isRefusal(checked)) throw new Error(checked.message);
  return planSend(checked as CheckedMessage, index, id, { templates, users: directory }, 1_000);
}

describe('planning a send', () => {
  it("sends to a user with the engine's traits, the request's data laid over them, as an api send", async () => {
    const send = (await plan({
      template: 'payment_failed',
      userId: 'ada',
      category: 'transactional',
      priority: 'high',
      channels: ['email', 'sms'],
      data: { user: { firstName: 'Ada L.' }, event: { properties: { amount: 49 } } },
    })) as SendCommand;
    expect(send).toMatchObject({
      ruleId: 'api',
      userId: 'ada',
      category: 'transactional',
      priority: 1000,
      template: 'payment_failed',
      channels: ['email', 'sms'],
      variant: null,
      holdout: false,
      triggeredBy: { eventType: 'api.send' },
      createdAt: 1_000,
      expiresAt: null,
      origin: 'api:key_backend',
      data: {
        user: { ...ada, firstName: 'Ada L.' },
        event: { properties: { amount: 49 } },
      },
    });
    expect(send.templateVersion).toBeUndefined();
  });

  it('defaults to every channel the template has content for, except webhook', async () => {
    const send = (await plan({
      template: 'welcome',
      userId: 'ada',
      category: 'marketing',
    })) as SendCommand;
    expect(send.channels.sort()).toEqual(['email', 'inapp', 'push']);
    expect(send.priority).toBe(500);
  });

  it("sends to a raw address under its recipient id, with the address as the recipient's trait", async () => {
    const send = (await plan({
      template: 'welcome',
      to: { email: 'Guest@Example.com' },
      category: 'transactional',
      data: { user: { firstName: 'Guest', locale: 'de' } },
    })) as SendCommand;
    expect(send.userId).toBe(recipientIdOf({ kind: 'email', normalised: 'guest@example.com' }));
    expect(send.channels).toEqual(['email']);
    expect(send.data.user).toEqual({
      firstName: 'Guest',
      locale: 'de',
      email: 'Guest@Example.com',
    });
  });

  it('refuses an unknown template with the close names, and a channel the template has no content for', async () => {
    expect(
      await plan({ template: 'welcom', userId: 'ada', category: 'transactional' }),
    ).toMatchObject({
      status: 422,
      code: 'LC_ERR_UNKNOWN_TEMPLATE',
      field: 'template',
      message: expect.stringMatching(/no template "welcom"; did you mean "welcome"\?/),
    });
    expect(
      await plan({ template: 'nothing-like-it', userId: 'ada', category: 'transactional' }),
    ).toMatchObject({ message: expect.stringMatching(/^no template "nothing-like-it" \(GET/) });
    expect(
      await plan({
        template: 'winback',
        userId: 'ada',
        category: 'marketing',
        channels: ['email', 'sms'],
      }),
    ).toMatchObject({
      status: 422,
      code: 'LC_ERR_TEMPLATE_CHANNEL',
      field: 'channels',
      message: expect.stringMatching(
        /template "winback" has no sms content \(it has email, push, webhook\)/,
      ),
    });
  });

  it('refuses a user the engine does not know, saying how to fix it', async () => {
    expect(
      await plan({ template: 'welcome', userId: 'nobody', category: 'transactional' }),
    ).toMatchObject({
      status: 422,
      code: 'LC_ERR_UNKNOWN_USER',
      field: 'userId',
      message: expect.stringMatching(/never identified, or erased.*identify/),
    });
  });

  it('derives the sendId from the credential, the Idempotency-Key and the index; random without a key', () => {
    const again = apiSendId({ ...identity, requestId: 'req-2' }, 0);
    expect(apiSendId(identity, 0)).toBe(again);
    expect(apiSendId(identity, 0)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab]/);
    expect(apiSendId(identity, 1)).not.toBe(apiSendId(identity, 0));
    expect(apiSendId({ ...identity, principal: 'key_other' }, 0)).not.toBe(apiSendId(identity, 0));
    expect(apiSendId({ ...identity, idempotencyKey: 'other' }, 0)).not.toBe(apiSendId(identity, 0));
    const keyless = { ...identity, idempotencyKey: null };
    expect(apiSendId(keyless, 0)).not.toBe(apiSendId(keyless, 0));
  });

  it('finds close template names by edits or containment', () => {
    const known = ['welcome', 'winback', 'weekly_digest', 'payment_failed', 'activation_tip'];
    expect(closeNames('welcom', known)).toEqual(['welcome']);
    expect(closeNames('payment', known)).toEqual(['payment_failed']);
    expect(closeNames('zzz', known)).toEqual([]);
  });
});
