// Delivery's side of platform/users.ts: what it holds about one user (current preferences
// and their history, suppressions, the in-app inbox), read for the staff lookup. Reads only.
import type { RedisDeps } from '../platform/redis.ts';
import type { UserMessaging } from '../platform/users.ts';
import { createInbox, type Inbox } from './inapp/inbox.ts';
import { createPreferencesStore, type PreferencesStore } from './preferences/store.ts';

/** Over delivery's Redis stores, or over given ones (the demo's in-memory stores). */
export function createUserMessaging(
  from: { redis: RedisDeps } | { preferences: PreferencesStore; inbox: Inbox },
): UserMessaging {
  const { preferences, inbox } =
    'redis' in from
      ? { preferences: createPreferencesStore(from.redis), inbox: createInbox(from.redis) }
      : from;
  return {
    async preferences(userId, historyLimit) {
      const [current, history] = await Promise.all([
        preferences.get(userId),
        preferences.history(userId, historyLimit),
      ]);
      return {
        unsubscribedAll: current.unsubscribedAll,
        consents: current.consents,
        types: current.types,
        history,
      };
    },
    suppressions: (userId) => preferences.suppressions(userId),
    async inbox(userId, limit) {
      const page = await inbox.page(userId, { limit });
      return {
        unread: page.unread,
        messages: page.messages.map((m) => ({
          id: m.id,
          ruleId: m.ruleId,
          category: m.category,
          title: m.title,
          body: m.body,
          ...(m.url !== undefined ? { url: m.url } : {}),
          createdAt: m.createdAt,
          readAt: m.readAt ?? null,
        })),
      };
    },
  };
}
