// HMAC-signed tokens for tracking links, one-click unsubscribe and preference pages.
// A token is `<base64url(JSON payload)>.<base64url(HMAC-SHA256(purpose + payload))>`: the
// purpose is part of the MAC so a click token can never be replayed as an unsubscribe.
import { createHmac, timingSafeEqual } from 'node:crypto';

export type TokenPurpose = 'click' | 'open' | 'unsubscribe' | 'preferences';

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

export interface Signer {
  sign(purpose: TokenPurpose, payload: object): string;
  /** The payload, or null when the token is malformed, tampered with or for another purpose. */
  verify<T>(purpose: TokenPurpose, token: string): T | null;
}

const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export function createSigner(secret: string): Signer {
  if (secret.length < 16) throw new Error('signing secret must be at least 16 characters');
  const mac = (purpose: TokenPurpose, body: string) => createHmac('sha256', secret).update(`${purpose}\n${body}`).digest();
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

const toWire = (m: MessageRef): RefWire => ({ s: m.sendId, u: m.userId, r: m.ruleId, c: m.channel, v: m.variant, k: m.category });
const fromWire = (w: Partial<RefWire>): MessageRef | null =>
  typeof w.s === 'string' && typeof w.u === 'string' && typeof w.r === 'string' && typeof w.c === 'string' && typeof w.k === 'string'
    ? { sendId: w.s, userId: w.u, ruleId: w.r, channel: w.c, variant: typeof w.v === 'string' ? w.v : null, category: w.k }
    : null;

/** The token of a tracking URL (its `t` query parameter); tokens travel in the query, where their length is not limited like a path segment's. */
export function tokenOf(url: string): string {
  return new URL(url).searchParams.get('t') ?? '';
}

/** Builds and reads the public tracking URLs under `publicBaseUrl`. */
export interface TrackingLinks {
  click(ref: MessageRef, url: string): string;
  openPixel(ref: MessageRef): string;
  unsubscribe(ref: MessageRef): string;
  preferences(userId: string, now: number): string;
  readClick(token: string): ClickPayload | null;
  readOpen(token: string): MessageRef | null;
  readUnsubscribe(token: string): MessageRef | null;
  readPreferences(token: string, now: number): PreferencesPayload | null;
}

/** How long a preference-page link stays valid. */
export const PREFERENCES_LINK_TTL_MS = 90 * 24 * 3600 * 1000;

export function createTrackingLinks(opts: { publicBaseUrl: string; signingSecret: string }): TrackingLinks {
  const signer = createSigner(opts.signingSecret);
  const base = opts.publicBaseUrl.replace(/\/+$/, '');
  return {
    click: (ref, url) => `${base}/t/c?t=${signer.sign('click', { ...toWire(ref), l: url })}`,
    openPixel: (ref) => `${base}/t/o.gif?t=${signer.sign('open', toWire(ref))}`,
    unsubscribe: (ref) => `${base}/t/u?t=${signer.sign('unsubscribe', toWire(ref))}`,
    preferences: (userId, now) => `${base}/p?t=${signer.sign('preferences', { u: userId, e: now + PREFERENCES_LINK_TTL_MS })}`,
    readClick(token) {
      const w = signer.verify<Partial<RefWire> & { l?: unknown }>('click', token);
      const ref = w && fromWire(w);
      if (!ref || typeof w.l !== 'string' || !/^https?:\/\//i.test(w.l)) return null;
      return { ...ref, url: w.l };
    },
    readOpen: (token) => {
      const w = signer.verify<Partial<RefWire>>('open', token);
      return w && fromWire(w);
    },
    readUnsubscribe: (token) => {
      const w = signer.verify<Partial<RefWire>>('unsubscribe', token);
      return w && fromWire(w);
    },
    readPreferences(token, now) {
      const w = signer.verify<{ u?: unknown; e?: unknown }>('preferences', token);
      if (!w || typeof w.u !== 'string' || typeof w.e !== 'number' || w.e < now) return null;
      return { userId: w.u, exp: w.e };
    },
  };
}
