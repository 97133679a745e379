// The contract between the delivery pipeline and channel providers. A provider never
// throws for expected outcomes: it returns sent / retriable / permanent.
import type { Channel } from '../platform/contracts.ts';

/** Who a message goes to, resolved from the user's traits and device/endpoint registry. */
export interface Recipient {
  userId: string;
  email?: string;
  phone?: string;
  /** Push device tokens registered for the user. */
  deviceTokens?: string[];
  /** Endpoint for the webhook channel (trait `webhookUrl` or rule data). */
  webhookUrl?: string;
  locale: string;
  timezone: string;
}

/** A template rendered for one channel. */
export interface RenderedContent {
  /** email */
  subject?: string;
  html?: string;
  text?: string;
  /** push / in-app */
  title?: string;
  body?: string;
  url?: string;
  /** webhook / in-app extra payload */
  data?: Record<string, unknown>;
}

export interface OutgoingMessage {
  sendId: string;
  ruleId: string;
  category: string;
  channel: Channel;
  recipient: Recipient;
  content: RenderedContent;
  /** Extra headers (email: List-Unsubscribe, List-Unsubscribe-Post). */
  headers?: Record<string, string>;
}

export type ProviderResult =
  | { status: 'sent'; providerMessageId?: string }
  /**
   * Worth another try later (timeouts, 4xx SMTP, 5xx HTTP, 429). `ambiguous`: the call ended
   * without an answer after the message may have reached the provider (a connection dropped
   * after the data, the call's deadline): it may have accepted it, so a retry asks it first
   * (`accepted`) and no other provider is tried in the same pass.
   */
  | { status: 'retriable'; error: string; retryAfterMs?: number; ambiguous?: boolean }
  /** Never worth retrying; `suppress` marks the address/token as dead for future sends. */
  | {
      status: 'permanent';
      error: string;
      suppress?: 'hard_bounce' | 'invalid_address' | 'invalid_token' | 'complaint';
    };

export interface Provider {
  /** Unique name, used for the per-provider circuit breaker and in delivery outcomes. */
  readonly name: string;
  readonly channel: Channel;
  send(message: OutgoingMessage): Promise<ProviderResult>;
  /**
   * The longest a `send` may take before the pipeline stops waiting and treats it as an
   * ambiguous failure (the pipeline's default when absent). Providers with a timeout of their
   * own set this a little above it, so theirs fires first.
   */
  readonly deadlineMs?: number;
  /**
   * Reconciliation after a worker died during a call: whether this provider already accepted
   * the message. Throws when it cannot tell. Absent: the provider cannot be asked (its sends
   * carry an idempotency key the receiver dedupes on instead, or nothing can be known).
   */
  accepted?(message: OutgoingMessage): Promise<boolean>;
  close?(): Promise<void>;
}
