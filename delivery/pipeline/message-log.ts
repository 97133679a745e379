// The message log's record of a send a provider accepted: what the recipient got on that
// channel (the content after link rewriting, so the signed links and the open pixel too),
// where it went, which template version and locale rendered it, and the send's own data, so
// that support can resend the same message. The worker publishes it to `<prefix>.messages`
// with the batch's outcomes, before the batch commits; the analytics sink keeps the content
// for LC_MESSAGE_BODY_TTL_DAYS and the metadata after that.
import { LARGE_RECORD_BYTES } from '../../platform/bus.ts';
import type { Channel, MessageRecord } from '../../platform/contracts.ts';
import type { Recipient, RenderedContent } from '../provider.ts';
import type { SendContext } from '../stage.ts';

/**
 * What a record may weigh before parts of it are left out: the messages topic takes records
 * of LARGE_RECORD_BYTES, headers and Avro framing aside.
 */
export const MESSAGE_RECORD_BUDGET = LARGE_RECORD_BYTES - 256 * 1024;

/** Where the message went: email address, phone, device tokens, webhook URL; the userId in-app. */
export function recipientAddress(r: Recipient, channel: Channel): string | null {
  switch (channel) {
    case 'email':
      return r.email ?? null;
    case 'sms':
      return r.phone ?? null;
    case 'push':
      // The push provider may find more devices in its registry; these are the ones the send named.
      return r.deviceTokens && r.deviceTokens.length > 0 ? r.deviceTokens.join(',') : null;
    case 'webhook':
      return r.webhookUrl ?? null;
    case 'inapp':
      return r.userId;
  }
}

/** An email's subject, HTML and text go to their own fields; the rest of the content (push, in-app, SMS, webhook) to `content`. */
function splitContent(content: RenderedContent): {
  subject: string | null;
  html: string | null;
  text: string | null;
  rest: Record<string, unknown>;
} {
  const { subject, html, text, ...rest } = content;
  return { subject: subject ?? null, html: html ?? null, text: text ?? null, rest };
}

const bytes = (s: string | null) => (s === null ? 0 : Buffer.byteLength(s, 'utf8'));

/**
 * The record of a send the provider accepted on `ctx.channel`, or null when nothing was
 * rendered. A record that would exceed the topic's record size (an email at the size limit
 * with a large data snapshot) leaves out the send's data, then the text part, and names what
 * it left out in `content.omitted`: such a message stays readable but cannot be resent.
 */
export function messageRecord(
  ctx: Pick<SendContext, 'send' | 'channel' | 'recipient' | 'message' | 'rendered'>,
  ts: number,
): { record: MessageRecord; omitted: string[] } | null {
  if (!ctx.message) return null;
  const { send, channel } = ctx;
  const { subject, html, text, rest } = splitContent(ctx.message.content);
  const record: MessageRecord = {
    id: `${send.sendId}:${channel}`,
    sendId: send.sendId,
    userId: send.userId,
    ruleId: send.ruleId,
    campaignId: send.campaignId ?? null,
    category: send.category,
    channel,
    template: send.template,
    templateVersion: ctx.rendered?.templateVersion ?? null,
    locale: ctx.rendered?.locale ?? ctx.recipient.locale,
    to: recipientAddress(ctx.recipient, channel),
    subject,
    html,
    text,
    content: rest,
    data: send.data,
    origin: send.origin ?? null,
    ts,
  };
  const omitted: string[] = [];
  const weight = () =>
    bytes(record.subject) +
    bytes(record.html) +
    bytes(record.text) +
    bytes(JSON.stringify(record.content)) +
    bytes(JSON.stringify(record.data));
  if (weight() > MESSAGE_RECORD_BUDGET) {
    record.data = {};
    omitted.push('data');
  }
  if (weight() > MESSAGE_RECORD_BUDGET) {
    record.text = null;
    omitted.push('text');
  }
  if (omitted.length > 0) record.content = { ...record.content, omitted };
  return { record, omitted };
}
