import { describe, expect, it } from 'vitest';
import {
  decideConsent,
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
