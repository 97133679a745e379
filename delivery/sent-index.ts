// Where each sent message went, for 60 days: the pipeline records it when a provider has
// accepted the message, and the mail provider's bounce and complaint webhook (tracking/)
// looks it up by the sendId in the Message-ID to find the user and the send. Written by
// one sub-folder and read by another, it belongs to neither.
import type { Redis } from 'ioredis';
import type { Channel, SendCommand } from '../platform/contracts.ts';
import type { KeySpace } from '../platform/keys.ts';

/** Where a sent message went, looked up by sendId when a bounce or complaint comes back. */
export interface SentRecord {
  sendId: string;
  userId: string;
  ruleId: string;
  channel: Channel;
  variant: string | null;
  category: string;
  holdout: boolean;
  address: string | null;
}

export interface SentIndex {
  remember(send: SendCommand, channel: Channel, address: string | null): Promise<void>;
  lookup(sendId: string): Promise<SentRecord[]>;
}

const SENT_INDEX_TTL_SECONDS = 60 * 24 * 3600;

export function createSentIndex(deps: { redis: Redis; keys: KeySpace }): SentIndex {
  // Keyed the way the email provider writes the sendId into the Message-ID, so a bounce's
  // Message-ID finds it.
  const key = (sendId: string) =>
    deps.keys.global(`dlv:sent:${sendId.replace(/[^A-Za-z0-9._-]/g, '-')}`);
  return {
    async remember(send, channel, address) {
      const rec: SentRecord = {
        sendId: send.sendId,
        userId: send.userId,
        ruleId: send.ruleId,
        channel,
        variant: send.variant,
        category: send.category,
        holdout: send.holdout,
        address,
      };
      await deps.redis
        .multi()
        .hset(key(send.sendId), channel, JSON.stringify(rec))
        .expire(key(send.sendId), SENT_INDEX_TTL_SECONDS)
        .exec();
    },
    async lookup(sendId) {
      const h = await deps.redis.hgetall(key(sendId));
      return Object.values(h).map((v) => JSON.parse(v) as SentRecord);
    },
  };
}
