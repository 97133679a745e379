// Client of the SMTP sink's HTTP API: what users would have received.
import type { MessageFilter, ReceivedMessage } from '../../devtools/smtp-sink.ts';
import { stack } from './isolation.ts';
import { waitFor } from './wait.ts';

export type { ReceivedMessage } from '../../devtools/smtp-sink.ts';

export interface SmtpSinkClient {
  list(filter?: MessageFilter): Promise<ReceivedMessage[]>;
  get(id: string): Promise<ReceivedMessage | undefined>;
  raw(id: string): Promise<string | undefined>;
  /** Waits until a message with this Message-ID (brackets optional) has arrived. */
  waitForMessage(messageId: string, timeoutMs?: number): Promise<ReceivedMessage>;
  /** Waits until at least `count` messages match the filter. */
  waitForCount(
    filter: MessageFilter,
    count: number,
    timeoutMs?: number,
  ): Promise<ReceivedMessage[]>;
  /** Deletes every message of the sink: only for tests that own the whole sink. */
  clear(): Promise<void>;
}

export function smtpSinkClient(baseUrl: string = stack().smtpApiUrl): SmtpSinkClient {
  async function call(path: string, init?: RequestInit): Promise<Response> {
    const res = await fetch(new URL(path, baseUrl), init);
    if (!res.ok && res.status !== 404)
      throw new Error(`SMTP sink ${init?.method ?? 'GET'} ${path}: HTTP ${res.status}`);
    return res;
  }
  const list = async (filter: MessageFilter = {}) => {
    const q = new URLSearchParams(
      Object.entries(filter).filter((e): e is [string, string] => typeof e[1] === 'string'),
    );
    const res = await call(`/messages?${q.toString()}`);
    return ((await res.json()) as { messages: ReceivedMessage[] }).messages;
  };
  return {
    list,
    async get(id) {
      const res = await call(`/messages/${encodeURIComponent(id)}`);
      return res.status === 404 ? undefined : ((await res.json()) as ReceivedMessage);
    },
    async raw(id) {
      const res = await call(`/messages/${encodeURIComponent(id)}/raw`);
      return res.status === 404 ? undefined : res.text();
    },
    async waitForMessage(messageId, timeoutMs = 30_000) {
      return waitFor(async () => (await list({ messageId }))[0], {
        timeout: timeoutMs,
        message: `no message with Message-ID ${messageId} in the SMTP sink`,
      });
    },
    async waitForCount(filter, count, timeoutMs = 30_000) {
      return waitFor(
        async () => {
          const found = await list(filter);
          return found.length >= count ? found : undefined;
        },
        {
          timeout: timeoutMs,
          message: `fewer than ${count} messages matching ${JSON.stringify(filter)} in the SMTP sink`,
        },
      );
    },
    async clear() {
      await call('/messages', { method: 'DELETE' });
    },
  };
}
