// Live fan-out of in-app messages to the gateway instance(s) holding a user's sockets.
// Redis pub/sub (one channel per user, subscribed while the user is connected) in the
// distributed deployment; an in-process twin with the same semantics for the embedded demo
// and unit tests.
import type { Redis } from 'ioredis';
import type { KeySpace } from '../../platform/keys.ts';
import type { InboxMessage } from './inbox.ts';

export interface LiveChannel {
  /** Delivers to every subscriber of the user, on any instance. */
  publish(userId: string, message: InboxMessage): Promise<void>;
  /** Starts receiving the user's messages through the `onMessage` handler. */
  subscribe(userId: string): Promise<void>;
  unsubscribe(userId: string): Promise<void>;
  onMessage(handler: (userId: string, message: InboxMessage) => void): void;
  /** Resolves once subscriptions can be made (Redis: the subscriber connection is ready). */
  ready(): Promise<void>;
  close(): Promise<void>;
}

/** The Redis pub/sub channel of one user's live in-app messages. */
export function inappChannel(keys: KeySpace, userId: string): string {
  return keys.user(userId, 'inapp:live');
}

/**
 * Redis pub/sub. `redis` publishes; subscriptions use `subscriber` (a connection in subscriber
 * mode), by default a duplicate of `redis` created on first use and closed by `close()`.
 */
export function createRedisLiveChannel(deps: {
  redis: Redis;
  keys: KeySpace;
  subscriber?: Redis;
  onError?: (err: Error) => void;
}): LiveChannel {
  const owned = deps.subscriber === undefined;
  const handlers: ((userId: string, message: InboxMessage) => void)[] = [];
  /** channel -> userId, for the users subscribed through this instance */
  const users = new Map<string, string>();
  const listen = (channel: string, payload: string) => {
    const userId = users.get(channel);
    if (userId === undefined) return;
    let message: InboxMessage;
    try {
      message = JSON.parse(payload) as InboxMessage;
    } catch {
      return;
    }
    for (const h of handlers) h(userId, message);
  };
  let subscriber = deps.subscriber;
  subscriber?.on('message', listen);

  function sub(): Redis {
    if (!subscriber) {
      subscriber = deps.redis.duplicate();
      if (deps.onError) subscriber.on('error', deps.onError);
      subscriber.on('message', listen);
    }
    return subscriber;
  }

  return {
    async publish(userId, message) {
      await deps.redis.publish(inappChannel(deps.keys, userId), JSON.stringify(message));
    },
    async subscribe(userId) {
      const channel = inappChannel(deps.keys, userId);
      users.set(channel, userId);
      await sub().subscribe(channel);
    },
    async unsubscribe(userId) {
      const channel = inappChannel(deps.keys, userId);
      users.delete(channel);
      await sub().unsubscribe(channel);
    },
    onMessage(handler) {
      handlers.push(handler);
    },
    async ready() {
      const s = sub();
      // Subscribing before the connection is ready races ioredis' ready check (INFO) on a
      // connection that is already in subscriber mode: wait for it once.
      if (s.status === 'wait') await s.connect();
      if (s.status !== 'ready') {
        await new Promise<void>((resolve, reject) => {
          s.once('ready', () => resolve());
          s.once('end', () =>
            reject(new Error('in-app subscriber connection closed before it was ready')),
          );
        });
      }
    },
    async close() {
      users.clear();
      if (owned && subscriber) await subscriber.quit().catch(() => undefined);
    },
  };
}

/** In-process twin for the embedded demo and tests: one object shared by provider and gateway. */
export function createMemoryLiveChannel(): LiveChannel {
  const handlers: ((userId: string, message: InboxMessage) => void)[] = [];
  const subscribed = new Set<string>();
  return {
    async publish(userId, message) {
      if (!subscribed.has(userId)) return;
      // Asynchronous like a real pub/sub hop, and a copy like a serialised payload.
      const copy = structuredClone(message);
      queueMicrotask(() => {
        for (const h of handlers) h(userId, copy);
      });
    },
    async subscribe(userId) {
      subscribed.add(userId);
    },
    async unsubscribe(userId) {
      subscribed.delete(userId);
    },
    onMessage(handler) {
      handlers.push(handler);
    },
    async ready() {},
    async close() {
      subscribed.clear();
    },
  };
}
