import { describe, expect, it } from 'vitest';
import type { Channel } from '../../platform/contracts.ts';
import { loadMessageTypes } from '../../platform/message-types.ts';
import {
  decideConsent,
  decideMessageType,
  normaliseTypes,
  decideSuppression,
  emptyPreferences,
  normalisePatch,
  PreferencesError,
  type UserPreferences,
} from './model.ts';

const NOW = Date.parse('2026-03-10T12:00:00Z');
const granted = { granted: true, at: NOW - 1000, source: 'signup_form' };
const revoked = { granted: false, at: NOW - 500, source: 'preference_page' };

describe('decideConsent', () => {
  const prefs = (p: Partial<UserPreferences>): UserPreferences => ({
    ...emptyPreferences('u'),
    ...p,
  });
  it.each([
    ['transactional needs no opt-in', prefs({}), 'transactional', 'email', true],
    [
      'transactional ignores a global unsubscribe',
      prefs({ unsubscribedAll: { at: NOW, source: 'x' } }),
      'transactional',
      'email',
      true,
    ],
    [
      'marketing without an opt-in record is refused',
      prefs({}),
      'marketing',
      'email',
      'no_opt_in:marketing:email',
    ],
    [
      'marketing with an opt-in is allowed',
      prefs({ consents: { marketing: { email: granted } } }),
      'marketing',
      'email',
      true,
    ],
    [
      'an opt-in on email does not cover sms',
      prefs({ consents: { marketing: { email: granted } } }),
      'marketing',
      'sms',
      'no_opt_in:marketing:sms',
    ],
    [
      'a withdrawn opt-in is refused',
      prefs({ consents: { marketing: { email: revoked } } }),
      'marketing',
      'email',
      'opted_out:marketing:email',
    ],
    [
      'a global unsubscribe beats an opt-in',
      prefs({
        unsubscribedAll: { at: NOW, source: 'x' },
        consents: { marketing: { email: granted } },
      }),
      'marketing',
      'email',
      'unsubscribed_all',
    ],
    ['custom categories are allowed by default', prefs({}), 'product_updates', 'email', true],
    [
      'custom categories honour an opt-out',
      prefs({ consents: { product_updates: { push: revoked } } }),
      'product_updates',
      'push',
      'opted_out:product_updates:push',
    ],
    [
      'custom categories honour a global unsubscribe',
      prefs({ unsubscribedAll: { at: NOW, source: 'x' } }),
      'product_updates',
      'email',
      'unsubscribed_all',
    ],
  ] as const)('%s', (_name, p, category, channel, expected) => {
    const d = decideConsent(p, category, channel);
    expect(d.allowed ? true : d.reason).toBe(expected);
  });
});

describe('decideSuppression', () => {
  it('blocks a deleted user on every channel', () => {
    expect(
      decideSuppression(
        { deleted: { reason: 'user_deleted', at: NOW }, channels: {} },
        'inapp',
        'u',
      ),
    ).toEqual({ allowed: false, reason: 'user_deleted' });
  });
  it('blocks the bounced address but not a new one', () => {
    const s = {
      deleted: null,
      channels: { email: { reason: 'hard_bounce' as const, at: NOW, address: 'Old@Example.com' } },
    };
    expect(decideSuppression(s, 'email', 'old@example.com')).toEqual({
      allowed: false,
      reason: 'hard_bounce',
    });
    expect(decideSuppression(s, 'email', 'new@example.com')).toEqual({ allowed: true });
    expect(decideSuppression(s, 'sms', '+100')).toEqual({ allowed: true });
  });
  it('a suppression without an address blocks the whole channel', () => {
    expect(
      decideSuppression(
        { deleted: null, channels: { sms: { reason: 'manual', at: NOW } } },
        'sms',
        '+1',
      ),
    ).toEqual({ allowed: false, reason: 'manual' });
  });
});

describe('normalisePatch', () => {
  it('turns booleans and records into consent records with time and source', () => {
    const out = normalisePatch(
      {
        unsubscribedAll: false,
        consents: {
          marketing: {
            email: { granted: true, source: 'signup_form', at: '2026-03-01T00:00:00Z' },
          },
          news: { push: false },
        },
      },
      NOW,
      'admin_api',
    );
    expect(out.unsubscribedAll).toBe(false);
    expect(out.records).toEqual([
      {
        category: 'marketing',
        channel: 'email',
        record: { granted: true, at: Date.parse('2026-03-01T00:00:00Z'), source: 'signup_form' },
      },
      {
        category: 'news',
        channel: 'push',
        record: { granted: false, at: NOW, source: 'admin_api' },
      },
    ]);
  });
  it('requires the source of a marketing opt-in from the API', () => {
    expect(() =>
      normalisePatch({ consents: { marketing: { email: true } } }, NOW, 'admin_api', true),
    ).toThrow(/source is required/);
    expect(
      normalisePatch({ consents: { marketing: { email: false } } }, NOW, 'admin_api', true)
        .records[0]!.record.source,
    ).toBe('admin_api');
  });
  it.each([
    [{ consents: { transactional: { email: false } } }, /transactional/],
    [{ consents: { marketing: { fax: true } } }, /unknown channel "fax"/],
    [{ consents: { 'Bad Category': { email: true } } }, /category "Bad Category"/],
    [
      { consents: { marketing: { email: { granted: true, source: 's', at: 'yesterday' } } } },
      /at must be/,
    ],
    [
      { consents: { marketing: { email: { granted: true, source: 's', at: NOW + 3_600_000 } } } },
      /in the future/,
    ],
    [{ consents: { marketing: { email: { granted: 'yes' } } } }, /granted must be a boolean/],
  ])('rejects %j', (patch, message) => {
    expect(() => normalisePatch(patch as never, NOW, 'admin_api')).toThrow(PreferencesError);
    expect(() => normalisePatch(patch as never, NOW, 'admin_api')).toThrow(message);
  });
});

describe('message types', () => {
  const types = loadMessageTypes('rules/message-types.json');
  const prefs = (p: Partial<UserPreferences>): UserPreferences => ({
    ...emptyPreferences('u'),
    ...p,
  });
  it.each<[string, UserPreferences, string, Channel, true | string]>([
    ['opt-in type, no choice', prefs({}), 'tips', 'email', 'message_type_no_opt_in:tips:email'],
    [
      'opt-in type, opted in',
      prefs({ types: { tips: { email: granted } } }),
      'tips',
      'email',
      true,
    ],
    [
      'opt-in type, opted in on another channel only',
      prefs({ types: { tips: { inapp: granted } } }),
      'tips',
      'email',
      'message_type_no_opt_in:tips:email',
    ],
    [
      'opt-in type, opted in then off',
      prefs({ types: { tips: { email: revoked } } }),
      'tips',
      'email',
      'message_type_off:tips:email',
    ],
    ['on by default', prefs({}), 'product_news', 'email', true],
    [
      'on by default, switched off',
      prefs({ types: { product_news: { email: revoked } } }),
      'product_news',
      'email',
      'message_type_off:product_news:email',
    ],
    ['off by default', prefs({}), 'product_news', 'push', 'message_type_off:product_news:push'],
    [
      'off by default, switched on',
      prefs({ types: { product_news: { push: granted } } }),
      'product_news',
      'push',
      true,
    ],
    ['not one of its channels', prefs({}), 'digest', 'sms', 'message_type_off:digest:sms'],
    [
      'not switchable: a stored switch does not apply',
      prefs({ types: { security: { email: revoked } } }),
      'security',
      'email',
      true,
    ],
    ['not switchable, any channel', prefs({}), 'billing', 'webhook', true],
  ])('%s', (_name, p, id, channel, expected) => {
    const d = decideMessageType(p, types.get(id), channel);
    expect(d).toEqual(expected === true ? { allowed: true } : { allowed: false, reason: expected });
  });

  it('an unknown type is decided by the category alone', () => {
    expect(decideMessageType(prefs({}), undefined, 'email')).toEqual({ allowed: true });
  });

  it('turns a patch of types into switches, with the source of an opt-in from the API', () => {
    expect(
      normaliseTypes(
        {
          tips: { email: { granted: true, source: 'signup_form', at: NOW - 5000 } },
          product_news: { email: false },
        },
        types,
        NOW,
        'admin_api',
        true,
      ),
    ).toEqual([
      {
        messageType: 'tips',
        channel: 'email',
        record: { granted: true, at: NOW - 5000, source: 'signup_form' },
      },
      {
        messageType: 'product_news',
        channel: 'email',
        record: { granted: false, at: NOW, source: 'admin_api' },
      },
    ]);
    expect(() => normaliseTypes({ tips: { email: true } }, types, NOW, 'admin_api', true)).toThrow(
      'types.tips.email.source is required to opt in to "tips"',
    );
    // Switching on a type that needs no opt-in takes the door as its source.
    expect(
      normaliseTypes({ product_news: { push: true } }, types, NOW, 'admin_api', true)[0]!.record
        .source,
    ).toBe('admin_api');
  });

  it.each([
    [
      { tipps: { email: false } },
      'types.tipps: unknown message type "tipps"',
      'LC_ERR_UNKNOWN_MESSAGE_TYPE',
    ],
    [
      { billing: { email: false } },
      'types.billing: "billing" (Billing) cannot be switched',
      'LC_ERR_UNKNOWN_MESSAGE_TYPE',
    ],
    [
      { digest: { sms: true } },
      'types.digest.sms: "digest" is not sent on sms (its channels: email)',
      'LC_ERR_UNKNOWN_MESSAGE_TYPE',
    ],
    [
      { tips: { email: { granted: 'yes' } } },
      'types.tips.email.granted must be a boolean',
      'LC_ERR_BAD_REQUEST',
    ],
    [
      { tips: { email: { granted: false, at: NOW + 3_600_000 } } },
      'types.tips.email.at is in the future',
      'LC_ERR_BAD_REQUEST',
    ],
  ])('refuses %j', (patch, message, code) => {
    let caught: unknown;
    try {
      normaliseTypes(patch as never, types, NOW, 'admin_api');
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(PreferencesError);
    expect((caught as PreferencesError).message).toContain(message);
    expect((caught as PreferencesError).code).toBe(code);
  });
});
