// In-app channel: the message is stored in the user's inbox first (so it survives the user
// being offline and a crash after this point), then published on the user's live channel
// (Redis pub/sub), where whichever gateway instance holds the user's socket pushes it out.
import { errorMessage } from '../../platform/errors.ts';
import type { Inbox, InboxMessage } from './inbox.ts';
import type { LiveChannel } from './live.ts';
import type { OutgoingMessage, Provider, ProviderResult } from '../provider.ts';

export function createInappProvider(
  opts: { name?: string },
  deps: {
    inbox: Inbox;
    live: LiveChannel;
    now?: () => number;
    onClose?: () => Promise<void>;
  },
): Provider {
  const now = deps.now ?? Date.now;
  return {
    name: opts.name ?? 'inapp',
    channel: 'inapp',
    async send(message: OutgoingMessage): Promise<ProviderResult> {
      const { title, body, url, data } = message.content;
      if (!title && !body)
        return { status: 'permanent', error: 'rendered in-app message has no title or body' };
      const entry: InboxMessage = {
        id: message.sendId,
        ruleId: message.ruleId,
        category: message.category,
        title: title ?? '',
        body: body ?? '',
        createdAt: now(),
        ...(url ? { url } : {}),
        ...(data ? { data } : {}),
      };
      const userId = message.recipient.userId;
      try {
        await deps.inbox.add(userId, entry);
        // Always publish, also for a retried send already in the inbox: a crash may have come
        // between storing and publishing. Clients dedupe live messages by id.
        await deps.live.publish(userId, entry);
        return { status: 'sent', providerMessageId: entry.id };
      } catch (err) {
        return { status: 'retriable', error: `inbox/live channel: ${errorMessage(err)}` };
      }
    },
    async close() {
      await deps.onClose?.();
    },
  };
}
