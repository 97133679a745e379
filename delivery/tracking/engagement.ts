// Turns what recipients do (open, click, unsubscribe) and what the mail provider reports
// (bounce, complaint, delivery) into an event on `lifecycle.events` (so rules can react) and
// an outcome on `lifecycle.deliveries` (so analytics sees the message's status).
// A clicked link is recorded as scheme, host and path only: queries and fragments carry
// password-reset and magic-link tokens, which must not end up on topics and in ClickHouse.
import { createHash } from 'node:crypto';
import type { Publisher } from '../../platform/bus.ts';
import { deliveryCodec, encodeWithHeader, eventCodec } from '../../platform/avro.ts';
import type {
  Channel,
  DeliveryOutcome,
  DeliveryStatus,
  NormalisedEvent,
  Topics,
} from '../../platform/contracts.ts';
import type { MessageRef } from '../links.ts';

export type EngagementKind =
  'opened' | 'clicked' | 'unsubscribed' | 'bounced' | 'complained' | 'delivered';

/** Event types on `lifecycle.events`, usable as rule triggers and goals. */
export const ENGAGEMENT_EVENT: Record<EngagementKind, string> = {
  opened: 'message_opened',
  clicked: 'message_clicked',
  unsubscribed: 'message_unsubscribed',
  bounced: 'message_bounced',
  complained: 'message_complained',
  delivered: 'message_delivered',
};

export interface EngagementRecorder {
  /** `url` is the clicked link; only its `linkTarget` is published. */
  record(
    kind: EngagementKind,
    ref: MessageRef,
    extra?: { url?: string; reason?: string; ts?: number },
  ): Promise<void>;
}

/** What a click records of its link: scheme, host (with port) and path; no credentials, query or fragment. */
export function linkTarget(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    // Signed click URLs are always http(s) URLs; anything else is not worth recording.
    return '';
  }
}

/** Kinds that happen once per message: their ids are stable so replays dedupe. */
const ONCE: ReadonlySet<EngagementKind> = new Set([
  'unsubscribed',
  'bounced',
  'complained',
  'delivered',
]);

export function createEngagementRecorder(deps: {
  publisher: Publisher;
  topics: Pick<Topics, 'events' | 'deliveries'>;
  now?: () => number;
}): EngagementRecorder {
  const now = deps.now ?? Date.now;
  return {
    async record(kind, ref, extra = {}) {
      const ts = extra.ts ?? now();
      const url = extra.url === undefined ? '' : linkTarget(extra.url);
      // Of the recorded target only: a hash of the full URL would let a short secret in its query be guessed.
      const urlHash = url ? `:${createHash('sha256').update(url).digest('hex').slice(0, 12)}` : '';
      const suffix = ONCE.has(kind) ? '' : `${urlHash}:${ts}`;
      const properties: Record<string, unknown> = {
        sendId: ref.sendId,
        ruleId: ref.ruleId,
        channel: ref.channel,
        category: ref.category,
        variant: ref.variant,
      };
      if (url) properties.url = url;
      if (extra.reason) properties.reason = extra.reason;
      const event: NormalisedEvent = {
        id: `tracker:${kind}:${ref.sendId}:${ref.channel}${suffix}`,
        userId: ref.userId,
        type: ENGAGEMENT_EVENT[kind],
        ts,
        receivedAt: now(),
        source: 'tracker',
        properties,
      };
      const outcome: DeliveryOutcome = {
        id: `${ref.sendId}:${ref.channel}:${kind}${suffix}`,
        sendId: ref.sendId,
        ruleId: ref.ruleId,
        userId: ref.userId,
        channel: ref.channel as Channel,
        status: kind as DeliveryStatus,
        reason: extra.reason ?? (url ? url.slice(0, 500) : null),
        provider: null,
        attempt: 0,
        ts,
        variant: ref.variant,
        holdout: false,
      };
      await deps.publisher.publish(deps.topics.events, [
        { key: ref.userId, ...encodeWithHeader(eventCodec, event) },
      ]);
      await deps.publisher.publish(deps.topics.deliveries, [
        { key: ref.userId, ...encodeWithHeader(deliveryCodec, outcome) },
      ]);
    },
  };
}
