// HMAC-signed tokens for tracking links, one-click unsubscribe, preference pages and the
// confirmation links of double opt-in.
// A token is `<base64url(JSON payload)>.<base64url(HMAC-SHA256(purpose + payload))>`: the
// purpose is part of the MAC so a click token can never be replayed as an unsubscribe.
// Every token carries its expiry (`e`, epoch ms), inside the MAC. A genuine token past its
// expiry still says what it was for (the routes show an expired click's destination as
// text, without redirecting), but it is no longer acted on.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Config } from '../platform/config.ts';

export type TokenPurpose = 'click' | 'open' | 'unsubscribe' | 'preferences' | 'confirm';

/** What a tracking token says about the message it came from. */
export interface MessageRef {
  sendId: string;
  userId: string;
  ruleId: string;
  channel: string;
  variant: string | null;
  category: string;
}

export interface ClickPayload extends MessageRef {
  url: string;
}

export interface PreferencesPayload {
  userId: string;
  /** Epoch ms after which the link no longer opens the page. */
  exp: number;
}

/** What the link of a confirmation email names: one opt-in request of one user. */
export interface ConfirmationPayload {
  userId: string;
  requestId: string;
  category: string;
  channel: string;
  /** Epoch ms after which the link no longer confirms. */
  exp: number;
}

/**
 * A token as read: `valid`; `expired` (signed by us, so what it says is true, but too old to
 * act on); or `invalid` (malformed, tampered with, signed with another secret or for
 * another purpose), about which nothing may be believed.
 */
export type LinkRead<T> =
  { status: 'valid'; value: T } | { status: 'expired'; value: T } | { status: 'invalid' };

/** How long links live (config auth.linkTtlDays and auth.unsubscribeTtlDays). */
export interface LinkLifetimes {
  /** Click and open links. */
  engagementMs: number;
  /** Unsubscribe and preference links: longer, since people unsubscribe from old mail too. */
  consentMs: number;
}

const DAY_MS = 24 * 3600 * 1000;
export const DEFAULT_LINK_LIFETIMES: LinkLifetimes = {
  engagementMs: 90 * DAY_MS,
  consentMs: 365 * DAY_MS,
};

export const linkLifetimes = (
  auth: Pick<Config['auth'], 'linkTtlDays' | 'unsubscribeTtlDays'>,
): LinkLifetimes => ({
  engagementMs: auth.linkTtlDays * DAY_MS,
  consentMs: auth.unsubscribeTtlDays * DAY_MS,
});

/**
 * Tokens minted before tokens carried an expiry have none. Click tokens of that time may wrap
 * a URL from user data, so they are treated as expired (the page shows the destination as
 * text) and legacy open tokens are no longer counted. Legacy unsubscribe tokens keep working
 * until this date, one unsubscribe lifetime after expiries were introduced: the mail they are
 * in was sent with a promise that unsubscribing works, and unsubscribing only ever reduces
 * what is sent. (Preference tokens always carried an expiry.)
 */
export const LEGACY_UNSUBSCRIBE_ACCEPTED_UNTIL = Date.UTC(2027, 11, 31);

export interface Signer {
  sign(purpose: TokenPurpose, payload: object): string;
  /** The payload, or null when the token is malformed, tampered with or for another purpose. */
  verify<T>(purpose: TokenPurpose, token: string): T | null;
}

const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export function createSigner(secret: string): Signer {
  if (secret.length < 16) throw new Error('signing secret must be at least 16 characters');
  const mac = (purpose: TokenPurpose, body: string) =>
    createHmac('sha256', secret).update(`${purpose}\n${body}`).digest();
  return {
    sign(purpose, payload) {
      const body = b64(JSON.stringify(payload));
      return `${body}.${b64(mac(purpose, body))}`;
    },
    verify<T>(purpose: TokenPurpose, token: string): T | null {
      const dot = token.indexOf('.');
      if (dot <= 0 || dot !== token.lastIndexOf('.')) return null;
      const body = token.slice(0, dot);
      const given = Buffer.from(token.slice(dot + 1), 'base64url');
      const expected = mac(purpose, body);
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
      try {
        const parsed: unknown = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
        return parsed && typeof parsed === 'object' ? (parsed as T) : null;
      } catch {
        return null;
      }
    },
  };
}

/** Compact wire form of a MessageRef inside tokens (links stay short). */
interface RefWire {
  s: string;
  u: string;
  r: string;
  c: string;
  v: string | null;
  k: string;
}

const toWire = (m: MessageRef): RefWire => ({
  s: m.sendId,
  u: m.userId,
  r: m.ruleId,
  c: m.channel,
  v: m.variant,
  k: m.category,
});
const fromWire = (w: Partial<RefWire>): MessageRef | null =>
  typeof w.s === 'string' &&
  typeof w.u === 'string' &&
  typeof w.r === 'string' &&
  typeof w.c === 'string' &&
  typeof w.k === 'string'
    ? {
        sendId: w.s,
        userId: w.u,
        ruleId: w.r,
        channel: w.c,
        variant: typeof w.v === 'string' ? w.v : null,
        category: w.k,
      }
    : null;

/** The token of a tracking URL (its `t` query parameter); tokens travel in the query, where their length is not limited like a path segment's. */
export function tokenOf(url: string): string {
  return new URL(url).searchParams.get('t') ?? '';
}

/** Builds and reads the public tracking URLs under `publicBaseUrl`; `now` is when a link is minted or used. */
export interface TrackingLinks {
  /** `lifetimeMs`: how long it works (default: the engagement lifetime; short links have their own). */
  click(ref: MessageRef, url: string, now: number, lifetimeMs?: number): string;
  openPixel(ref: MessageRef, now: number): string;
  unsubscribe(ref: MessageRef, now: number): string;
  preferences(userId: string, now: number): string;
  /** The link of a confirmation email; it works until `exp` (epoch ms). */
  confirmation(c: ConfirmationPayload): string;
  readClick(token: string, now: number): LinkRead<ClickPayload>;
  readOpen(token: string, now: number): LinkRead<MessageRef>;
  readUnsubscribe(token: string, now: number): LinkRead<MessageRef>;
  readPreferences(token: string, now: number): LinkRead<PreferencesPayload>;
  readConfirmation(token: string, now: number): LinkRead<ConfirmationPayload>;
}

const INVALID = { status: 'invalid' } as const;
/** `value` judged by its expiry `e`; `legacyUntil` is when a token without one stops being valid. */
const judged = <T>(value: T, e: unknown, now: number, legacyUntil = -Infinity): LinkRead<T> => {
  const expires = typeof e === 'number' ? e : legacyUntil;
  return now < expires ? { status: 'valid', value } : { status: 'expired', value };
};

export function createTrackingLinks(opts: {
  publicBaseUrl: string;
  signingSecret: string;
  lifetimes?: LinkLifetimes;
}): TrackingLinks {
  const signer = createSigner(opts.signingSecret);
  const base = opts.publicBaseUrl.replace(/\/+$/, '');
  const { engagementMs, consentMs } = opts.lifetimes ?? DEFAULT_LINK_LIFETIMES;
  return {
    click: (ref, url, now, lifetimeMs = engagementMs) =>
      `${base}/t/c?t=${signer.sign('click', { ...toWire(ref), l: url, e: now + lifetimeMs })}`,
    openPixel: (ref, now) =>
      `${base}/t/o.gif?t=${signer.sign('open', { ...toWire(ref), e: now + engagementMs })}`,
    unsubscribe: (ref, now) =>
      `${base}/t/u?t=${signer.sign('unsubscribe', { ...toWire(ref), e: now + consentMs })}`,
    preferences: (userId, now) =>
      `${base}/p?t=${signer.sign('preferences', { u: userId, e: now + consentMs })}`,
    confirmation: (c) =>
      `${base}/c?t=${signer.sign('confirm', { u: c.userId, r: c.requestId, k: c.category, c: c.channel, e: c.exp })}`,
    readClick(token, now) {
      const w = signer.verify<Partial<RefWire> & { l?: unknown; e?: unknown }>('click', token);
      const ref = w && fromWire(w);
      if (!ref || typeof w.l !== 'string' || !/^https?:\/\//i.test(w.l)) return INVALID;
      return judged({ ...ref, url: w.l }, w.e, now);
    },
    readOpen(token, now) {
      const w = signer.verify<Partial<RefWire> & { e?: unknown }>('open', token);
      const ref = w && fromWire(w);
      return ref ? judged(ref, w.e, now) : INVALID;
    },
    readUnsubscribe(token, now) {
      const w = signer.verify<Partial<RefWire> & { e?: unknown }>('unsubscribe', token);
      const ref = w && fromWire(w);
      return ref ? judged(ref, w.e, now, LEGACY_UNSUBSCRIBE_ACCEPTED_UNTIL) : INVALID;
    },
    readPreferences(token, now) {
      const w = signer.verify<{ u?: unknown; e?: unknown }>('preferences', token);
      if (!w || typeof w.u !== 'string' || typeof w.e !== 'number') return INVALID;
      return judged({ userId: w.u, exp: w.e }, w.e, now);
    },
    readConfirmation(token, now) {
      const w = signer.verify<{ u?: unknown; r?: unknown; k?: unknown; c?: unknown; e?: unknown }>(
        'confirm',
        token,
      );
      if (
        !w ||
        typeof w.u !== 'string' ||
        typeof w.r !== 'string' ||
        typeof w.k !== 'string' ||
        typeof w.c !== 'string' ||
        typeof w.e !== 'number'
      )
        return INVALID;
      return judged(
        { userId: w.u, requestId: w.r, category: w.k, channel: w.c, exp: w.e },
        w.e,
        now,
      );
    },
  };
}
