// In-app client tokens: the product's backend mints one for a logged-in user and hands it
// to the app, which opens the WebSocket and reads the inbox with it. The secret is
// LC_INAPP_SECRET, a secret of its own because the product's backend holds it: the one that
// signs tracking and unsubscribe links (LC_SIGNING_SECRET) stays with this product. Format
// `<base64url(userId)>.<expiry epoch s>.<base64url(HMAC-SHA256(secret, "inapp.<b64 user>.<exp>"))>`.
import { createHmac, timingSafeEqual } from 'node:crypto';

const mac = (secret: string, payload: string) =>
  createHmac('sha256', secret).update(`inapp.${payload}`).digest('base64url');

export function signInappToken(
  secret: string,
  userId: string,
  opts: { ttlMs?: number; now?: number } = {},
): string {
  if (!userId) throw new Error('userId is required');
  const exp = Math.floor(((opts.now ?? Date.now()) + (opts.ttlMs ?? 24 * 3600_000)) / 1000);
  const payload = `${Buffer.from(userId, 'utf8').toString('base64url')}.${exp}`;
  return `${payload}.${mac(secret, payload)}`;
}

/** The userId the token was issued for, or null when it is malformed, forged or expired. */
export function verifyInappToken(secret: string, token: string, now = Date.now()): string | null {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  const [user, expRaw, sig] = parts as [string, string, string];
  if (!/^\d{1,12}$/.test(expRaw)) return null;
  const expected = Buffer.from(mac(secret, `${user}.${expRaw}`));
  const given = Buffer.from(sig);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return null;
  if (Number(expRaw) * 1000 <= now) return null;
  const userId = Buffer.from(user, 'base64url').toString('utf8');
  return userId === '' ? null : userId;
}
