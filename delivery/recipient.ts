// Who a send goes to. The engine puts the user's traits snapshot in the send command's
// `data.user` (email, phone, timezone, locale, deviceTokens, webhookUrl): delivery reads
// addresses and the timezone from there, so it needs no user database of its own.
import type { Channel, SendCommand } from '../platform/contracts.ts';
import type { Recipient } from './provider.ts';
import { isValidTimezone } from '../platform/time.ts';

const str = (v: unknown) => (typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined);

export function resolveRecipient(
  send: SendCommand,
  defaults: { timezone: string; locale: string },
): Recipient {
  const user = (
    send.data.user && typeof send.data.user === 'object' ? send.data.user : {}
  ) as Record<string, unknown>;
  const tz = str(user.timezone);
  const r: Recipient = {
    userId: send.userId,
    locale: str(user.locale) ?? str(user.language) ?? defaults.locale,
    timezone: tz && isValidTimezone(tz) ? tz : defaults.timezone,
  };
  const email = str(user.email);
  if (email) r.email = email;
  const phone = str(user.phone);
  if (phone) r.phone = phone;
  const webhookUrl = str(user.webhookUrl) ?? str(send.data.webhookUrl);
  if (webhookUrl) r.webhookUrl = webhookUrl;
  const tokens = Array.isArray(user.deviceTokens)
    ? user.deviceTokens.filter((t): t is string => typeof t === 'string' && t !== '')
    : [];
  if (tokens.length > 0) r.deviceTokens = tokens;
  return r;
}

/** The address a channel sends to, or undefined when the user has none. In-app needs only the userId. */
export function addressFor(r: Recipient, channel: Channel): string | undefined {
  switch (channel) {
    case 'email':
      return r.email;
    case 'sms':
      return r.phone;
    case 'push':
      return r.deviceTokens?.[0];
    case 'webhook':
      return r.webhookUrl;
    case 'inapp':
      return r.userId;
  }
}
