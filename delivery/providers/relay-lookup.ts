// Reconciliation with an SMTP relay's message log. SMTP gives a sender no way to ask "did you
// take this message?": when a worker dies after the relay stored a message but before `sent`
// was recorded, the next owner of the send cannot tell whether to send it. Most relays and
// email services keep a searchable log of accepted messages by Message-ID (an ESP's events or
// outbound-messages API, or the local SMTP sink's `/messages?messageId=`). With such a lookup
// configured (LC_SMTP_LOOKUP_URLS), a takeover asks the relay first and records `sent`
// without sending again when the relay already has the message.

export interface RelayLookupOptions {
  /**
   * URL of the relay's message search, with `{messageId}` where the Message-ID goes (without
   * angle brackets, URL-encoded). Credentials in the URL (`https://api:key@host/...`) are sent
   * as HTTP Basic auth, never as part of the URL.
   */
  url: string;
  /**
   * JSON pointer (RFC 6901) into the response to what says whether the message was found: a
   * non-empty array, a number above 0 or `true` means found. Empty: the whole response.
   * A 404 answer means not found.
   */
  foundPointer: string;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/** Whether the relay has the message with this Message-ID; throws when it cannot tell. */
export type RelayLookup = (messageId: string) => Promise<boolean>;

function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/'))
    throw new Error(
      `JSON pointer ${JSON.stringify(pointer)} must be empty or start with "/" (e.g. "/messages")`,
    );
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function found(value: unknown): boolean {
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === 'number') return value > 0;
  return value === true;
}

export function createRelayLookup(opts: RelayLookupOptions): RelayLookup {
  const doFetch = opts.fetch ?? fetch;
  const path = parsePointer(opts.foundPointer);
  if (!opts.url.includes('{messageId}'))
    throw new Error(`relay lookup URL must contain {messageId} where the Message-ID goes`);
  const template = new URL(opts.url.replace('{messageId}', 'MESSAGE_ID_PLACEHOLDER'));
  const headers: Record<string, string> = { accept: 'application/json' };
  if (template.username || template.password) {
    const user = decodeURIComponent(template.username);
    const pass = decodeURIComponent(template.password);
    headers.authorization = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
    template.username = '';
    template.password = '';
  }
  const base = template.toString();
  // The host only, for error messages: the URL may carry a key in its query.
  const where = template.host;

  return async (messageId) => {
    const bare = messageId.trim().replace(/^<(.*)>$/, '$1');
    const url = base.replace('MESSAGE_ID_PLACEHOLDER', encodeURIComponent(bare));
    let res: Response;
    try {
      res = await doFetch(url, {
        headers,
        redirect: 'error',
        signal: AbortSignal.timeout(opts.timeoutMs ?? 5000),
      });
    } catch (err) {
      throw new Error(
        `relay lookup at ${where} failed: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    if (res.status === 404) {
      await res.body?.cancel();
      return false;
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`relay lookup at ${where} answered HTTP ${res.status}`);
    }
    let value: unknown;
    try {
      value = await res.json();
    } catch {
      throw new Error(`relay lookup at ${where} did not answer JSON`);
    }
    for (const key of path) {
      if (value === null || typeof value !== 'object') {
        throw new Error(`relay lookup at ${where}: the answer has nothing at ${opts.foundPointer}`);
      }
      value = (value as Record<string, unknown>)[key];
    }
    if (value === undefined)
      throw new Error(`relay lookup at ${where}: the answer has nothing at ${opts.foundPointer}`);
    return found(value);
  };
}
