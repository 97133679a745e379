// What the policy chain's suppression and consent stages would decide about a send if it
// were processed now, without claiming or changing anything: for answers that can say in
// advance that a send will be refused (a resend of a marketing email to a user who has
// unsubscribed since). Frequency caps and quiet hours are not foreseen: they depend on what
// else is sent until the send is read.
import type { Channel, SendCommand } from '../../platform/contracts.ts';
import { decideConsent, decideSuppression, TRANSACTIONAL } from '../preferences/model.ts';
import type { PreferencesStore } from '../preferences/store.ts';
import { addressFor, resolveRecipient } from '../recipient.ts';

/** The reason the chain would suppress the send on the channel, or null when it would pass these stages. */
export type PolicyPreview = (send: SendCommand, channel: Channel) => Promise<string | null>;

export function createPolicyPreview(
  preferences: Pick<PreferencesStore, 'get' | 'suppressions'>,
  defaults: { timezone: string; locale: string } = { timezone: 'UTC', locale: 'en' },
): PolicyPreview {
  return async (send, channel) => {
    const address = addressFor(resolveRecipient(send, defaults), channel);
    const [suppressions, prefs] = await Promise.all([
      preferences.suppressions(send.userId),
      preferences.get(send.userId),
    ]);
    // In the chain's order: suppression (every category), then consent (all but transactional).
    const suppressed = decideSuppression(suppressions, channel, address);
    if (!suppressed.allowed) return suppressed.reason;
    if (address === undefined && channel !== 'push') return `no_address:${channel}`;
    if (send.category === TRANSACTIONAL) return null;
    const consent = decideConsent(prefs, send.category, channel);
    return consent.allowed ? null : consent.reason;
  };
}
