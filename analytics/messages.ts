// The message log, read: what was sent to whom. A user's messages newest first (a keyset
// cursor, so pages do not shift when new messages arrive), search by recipient address or
// sendId, and one send with everything each channel got and what happened to it since.
//
// Three tables answer: `sends` (every send command, holdouts and suppressed ones included:
// what was asked, when), `messages` (what a provider accepted: the rendered content, its
// address and template version) and `deliveries` (each status with its reason), plus the
// tracker's `message_opened` / `message_clicked` events in `events`. A send the policy chain
// stopped has no content, only its statuses. Bodies older than the body TTL are never
// returned, whether or not the engine has emptied them yet. Same SQL on ClickHouse 18.16 and
// chDB: no FINAL, duplicates of a replay are grouped away by id.
import { createHash } from 'node:crypto';
import { CHANNELS, type Channel, type SendCommand } from '../platform/contracts.ts';
import { ErrorCodes, LifecycleError } from '../platform/errors.ts';
import { assertDatabaseName } from './schema.ts';
import type { AnalyticsStore } from './store.ts';

/** Statuses in the order a message goes through them: the tie-break of two at the same millisecond. */
export const STATUS_ORDER = [
  'queued',
  'deferred',
  'holdout',
  'suppressed',
  'failed',
  'sent',
  'delivered',
  'bounced',
  'complained',
  'read',
  'opened',
  'clicked',
  'unsubscribed',
] as const;
const STATUS_ORDER_SQL = `[${STATUS_ORDER.map((s) => `'${s}'`).join(', ')}]`;

export interface MessageListFilter {
  /** One user's messages. */
  userId?: string;
  /** Messages that went to this address (email: case-insensitive; phone, URL, token: exact). */
  to?: string;
  /** A sendId, or the beginning of one. */
  sendId?: string;
  /** Only sends created at or after this time (epoch ms). */
  since?: number;
  /** The `next` of the page before. */
  cursor?: string;
  /** Page size, 1 to 100. */
  limit: number;
}

/** One send on one channel, as the list shows it. */
export interface MessageSummary {
  sendId: string;
  channel: Channel;
  userId: string;
  ruleId: string;
  campaignId: string | null;
  category: string;
  template: string;
  templateVersion: number | null;
  locale: string | null;
  /** Where it went; null when it was never sent (suppressed, holdout, waiting). */
  to: string | null;
  /** Null when never sent, not an email, or past the body TTL. */
  subject: string | null;
  origin: string | null;
  holdout: boolean;
  /** When the send was created (epoch ms). */
  createdAt: number;
  /** When the provider accepted it (epoch ms), null when it did not (yet). */
  sentAt: number | null;
  /** The latest status and its reason; null before delivery decided anything. */
  status: string | null;
  reason: string | null;
}

export interface MessagePage {
  messages: MessageSummary[];
  /** Cursor of the next page; null on the last one. */
  next: string | null;
}

export interface HistoryEntry {
  status: string;
  ts: number;
  reason: string | null;
  provider: string | null;
  attempt: number;
}

export interface ChannelMessage {
  channel: Channel;
  status: string | null;
  reason: string | null;
  to: string | null;
  templateVersion: number | null;
  locale: string | null;
  sentAt: number | null;
  /** What the message said; null when it was never rendered and sent, or its body expired. */
  content: {
    subject: string | null;
    html: string | null;
    text: string | null;
    /** The rest of the rendered content (push, in-app, SMS, webhook). */
    other: Record<string, unknown>;
  } | null;
  /** The send's personalisation data as rendered; null when not logged or expired. */
  data: Record<string, unknown> | null;
  /** Parts the log had to leave out to fit its record (`data`, `text`); such a message cannot be resent. */
  omitted: string[];
  /** When the body is (or was) dropped (epoch ms); null when nothing was logged. */
  bodyExpiresAt: number | null;
  bodyExpired: boolean;
  /** Every status, oldest first: delivery's outcomes and the tracker's opens and clicks. */
  history: HistoryEntry[];
}

export interface MessageDetail {
  sendId: string;
  userId: string;
  ruleId: string;
  campaignId: string | null;
  category: string;
  template: string;
  priority: number | null;
  holdout: boolean;
  /** When the send was created; null when only delivery's records of it are stored. */
  createdAt: number | null;
  origin: string | null;
  channels: ChannelMessage[];
}

export interface MessageLogOptions {
  /** LC_MESSAGE_BODY_TTL_DAYS. */
  bodyTtlDays: number;
  now?: number;
}

// ------------------------------------------------------------------ cursor

interface CursorKey {
  createdAt: number;
  sendId: string;
  channel: string;
}

/** An opaque cursor: the sort key of the last item of a page. */
export function encodeCursor(key: CursorKey): string {
  return Buffer.from(JSON.stringify([key.createdAt, key.sendId, key.channel]), 'utf8').toString(
    'base64url',
  );
}

export function decodeCursor(cursor: string): CursorKey {
  const refuse = () =>
    new LifecycleError(
      ErrorCodes.BadRequest,
      'cursor is not one this API gave out: pass the `next` of the page before, unchanged',
      { details: { field: 'cursor' } },
    );
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw refuse();
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== 3 ||
    !Number.isSafeInteger(parsed[0]) ||
    (parsed[0] as number) < 0 ||
    typeof parsed[1] !== 'string' ||
    typeof parsed[2] !== 'string'
  )
    throw refuse();
  return { createdAt: parsed[0] as number, sendId: parsed[1], channel: parsed[2] };
}

// ------------------------------------------------------------------ list

const isEmailAddress = (to: string) => to.includes('@');

/** The SQL that matches a recipient address: case-insensitive for email, exact otherwise. */
function addressMatch(to: string): string {
  return isEmailAddress(to) ? 'lower(recipient) = lower({to:String})' : 'recipient = {to:String}';
}

/** The page of (send, channel) items, newest first, from the send commands. */
export function messageListSql(database: string, f: Omit<MessageListFilter, 'limit'>): string {
  assertDatabaseName(database);
  const db = database;
  const where: string[] = [];
  if (f.userId !== undefined) where.push('user_id = {userId:String}');
  if (f.sendId !== undefined) where.push('startsWith(send_id, {sendId:String})');
  if (f.since !== undefined) where.push('created_at_ms >= {since:UInt64}');
  if (f.to !== undefined)
    where.push(`send_id IN (SELECT send_id FROM ${db}.messages WHERE ${addressMatch(f.to)})`);
  const outer: string[] = [];
  if (f.to !== undefined)
    outer.push(
      `(send_id, channel) IN (SELECT send_id, channel FROM ${db}.messages WHERE ${addressMatch(f.to)})`,
    );
  if (f.cursor !== undefined)
    outer.push(
      '(created_at_ms < {cursorAt:UInt64} OR (created_at_ms = {cursorAt:UInt64} AND (send_id < {cursorSend:String} OR (send_id = {cursorSend:String} AND channel < {cursorChannel:String}))))',
    );
  // Filtered under other names first: an alias may not shadow a column the WHERE reads (18.16).
  return `SELECT send_id, channel, created_at_ms, user_id, rule_id, campaign_id, category, template, holdout
FROM (
  SELECT send_id, any(s_user_id) AS user_id, any(s_rule_id) AS rule_id, any(s_campaign_id) AS campaign_id,
         any(s_category) AS category, any(s_template) AS template, any(s_holdout) AS holdout,
         any(s_created_at_ms) AS created_at_ms, any(s_channels) AS channels
  FROM (
    SELECT send_id, user_id AS s_user_id, rule_id AS s_rule_id, campaign_id AS s_campaign_id,
           category AS s_category, template AS s_template, holdout AS s_holdout,
           created_at_ms AS s_created_at_ms, channels AS s_channels
    FROM ${db}.sends${where.length > 0 ? `\n    WHERE ${where.join(' AND ')}` : ''}
  )
  GROUP BY send_id
)
ARRAY JOIN channels AS channel${outer.length > 0 ? `\nWHERE ${outer.join(' AND ')}` : ''}
ORDER BY created_at_ms DESC, send_id DESC, channel DESC
LIMIT {limit:UInt32}`;
}

/** Latest status, its reason, and when it was sent, per (send, channel) of the given sends. */
export function statusSql(database: string): string {
  assertDatabaseName(database);
  return `SELECT send_id, channel,
       argMax(status, (ts_ms, indexOf(${STATUS_ORDER_SQL}, status))) AS last_status,
       argMax(reason, (ts_ms, indexOf(${STATUS_ORDER_SQL}, status))) AS last_reason,
       minIf(ts_ms, status = 'sent') AS sent_at_ms
FROM ${database}.deliveries
WHERE has({ids:Array(String)}, send_id)
GROUP BY send_id, channel`;
}

/** The log's metadata of the given sends, the subject only while the body is kept. */
export function messageMetaSql(database: string): string {
  assertDatabaseName(database);
  return `SELECT id, any(m_send_id) AS send_id, any(m_channel) AS channel, any(m_recipient) AS to_address,
       any(m_template_version) AS template_version, any(m_locale) AS locale, any(m_subject) AS subject,
       any(m_origin) AS origin, min(m_ts_ms) AS logged_at_ms
FROM (
  SELECT id, send_id AS m_send_id, channel AS m_channel, recipient AS m_recipient,
         template_version AS m_template_version, locale AS m_locale,
         if(ts_ms >= {cutoff:UInt64}, subject, '') AS m_subject, origin AS m_origin, ts_ms AS m_ts_ms
  FROM ${database}.messages
  WHERE has({ids:Array(String)}, send_id)
)
GROUP BY id`;
}

interface ListRow {
  send_id: string;
  channel: string;
  created_at_ms: number | string;
  user_id: string;
  rule_id: string;
  campaign_id: string;
  category: string;
  template: string;
  holdout: number | string;
}

interface StatusRow {
  send_id: string;
  channel: string;
  last_status: string;
  last_reason: string;
  sent_at_ms: number | string;
}

interface MetaRow {
  id: string;
  send_id: string;
  channel: string;
  to_address: string;
  template_version: number | string;
  locale: string;
  subject: string;
  origin: string;
  logged_at_ms: number | string;
}

const orNull = (s: string | null | undefined) =>
  s === undefined || s === null || s === '' ? null : s;
const cutoffOf = (o: MessageLogOptions) =>
  Math.max(0, (o.now ?? Date.now()) - o.bodyTtlDays * 86_400_000);

function checkFilter(f: MessageListFilter): void {
  if (f.userId === undefined && f.to === undefined && f.sendId === undefined)
    throw new LifecycleError(
      ErrorCodes.BadRequest,
      'say whose messages: give userId, to (a recipient address) or sendId',
      { details: { field: 'userId' } },
    );
  if (!Number.isInteger(f.limit) || f.limit < 1 || f.limit > 100)
    throw new LifecycleError(ErrorCodes.BadRequest, 'limit must be an integer from 1 to 100', {
      details: { field: 'limit' },
    });
}

/** Sends (one item per channel) matching the filter, newest first, a page at a time. */
export async function listMessages(
  store: AnalyticsStore,
  database: string,
  filter: MessageListFilter,
  opts: MessageLogOptions,
): Promise<MessagePage> {
  checkFilter(filter);
  const cursor = filter.cursor === undefined ? undefined : decodeCursor(filter.cursor);
  const params: Record<string, unknown> = { limit: filter.limit + 1 };
  if (filter.userId !== undefined) params.userId = filter.userId;
  if (filter.sendId !== undefined) params.sendId = filter.sendId;
  if (filter.since !== undefined) params.since = filter.since;
  if (filter.to !== undefined) params.to = filter.to;
  if (cursor) {
    params.cursorAt = cursor.createdAt;
    params.cursorSend = cursor.sendId;
    params.cursorChannel = cursor.channel;
  }
  const rows = await store.query<ListRow>(messageListSql(database, filter), params);
  const page = rows.slice(0, filter.limit);
  if (page.length === 0) return { messages: [], next: null };
  const ids = [...new Set(page.map((r) => r.send_id))];
  const [statuses, metas] = await Promise.all([
    store.query<StatusRow>(statusSql(database), { ids }),
    store.query<MetaRow>(messageMetaSql(database), { ids, cutoff: cutoffOf(opts) }),
  ]);
  const key = (sendId: string, channel: string) => `${sendId}:${channel}`;
  const status = new Map(statuses.map((s) => [key(s.send_id, s.channel), s]));
  const meta = new Map(metas.map((m) => [key(m.send_id, m.channel), m]));
  const messages = page.map((r): MessageSummary => {
    const s = status.get(key(r.send_id, r.channel));
    const m = meta.get(key(r.send_id, r.channel));
    const sentAt = Number(s?.sent_at_ms ?? 0);
    return {
      sendId: r.send_id,
      channel: r.channel as Channel,
      userId: r.user_id,
      ruleId: r.rule_id,
      campaignId: orNull(r.campaign_id),
      category: r.category,
      template: r.template,
      templateVersion: m && Number(m.template_version) > 0 ? Number(m.template_version) : null,
      locale: orNull(m?.locale),
      to: orNull(m?.to_address),
      subject: orNull(m?.subject),
      origin: orNull(m?.origin),
      holdout: Number(r.holdout) === 1,
      createdAt: Number(r.created_at_ms),
      sentAt: sentAt > 0 ? sentAt : m ? Number(m.logged_at_ms) : null,
      status: orNull(s?.last_status),
      reason: orNull(s?.last_reason),
    };
  });
  const last = page[page.length - 1]!;
  return {
    messages,
    next:
      rows.length > filter.limit
        ? encodeCursor({
            createdAt: Number(last.created_at_ms),
            sendId: last.send_id,
            channel: last.channel,
          })
        : null,
  };
}

// ------------------------------------------------------------------ one send

interface SendRowOut {
  send_id: string;
  user_id: string;
  rule_id: string;
  campaign_id: string;
  category: string;
  template: string;
  priority: number | string;
  holdout: number | string;
  created_at_ms: number | string;
  channels: string[];
}

interface MessageRowOut {
  id: string;
  channel: string;
  user_id: string;
  rule_id: string;
  campaign_id: string;
  category: string;
  template: string;
  template_version: number | string;
  locale: string;
  to_address: string;
  subject: string;
  html: string;
  text: string;
  content: string;
  data: string;
  origin: string;
  logged_at_ms: number | string;
}

interface OutcomeRowOut {
  id: string;
  channel: string;
  status: string;
  reason: string;
  provider: string;
  attempt: number | string;
  ts_ms: number | string;
  user_id: string;
  rule_id: string;
}

interface EngagementRowOut {
  id: string;
  type: string;
  ts_ms: number | string;
  channel: string;
  url: string;
}

const ENGAGEMENT: Record<string, string> = {
  message_opened: 'opened',
  message_clicked: 'clicked',
};

/**
 * The links of a message that act as its recipient: confirming an opt-in (`/c`), the one-click
 * unsubscribe (`/t/u`) and the preference page (`/p`), their token after `t=` (as sent, or
 * HTML-escaped by the template: `t&#x3D;`). Staff who read the message log could otherwise
 * act as the person, and confirm a consent with their own address as its evidence.
 */
// `/t/c` is the tracked click, not the confirmation: a `/c` right after `/t` is not one.
const ACTION_LINK_TOKEN =
  /((?:(?<!\/t)\/c|\/p|\/t\/u)\?t(?:=|&#x3D;|&#61;|%3D))[A-Za-z0-9._~%-]+/gi;
export const REDACTED_TOKEN = 'redacted';

/**
 * `value` with the token of every link that acts as the recipient replaced by `redacted`, in
 * strings at any depth. What staff read of a message; the stored message keeps its links (a
 * resend renders them anew).
 */
export function withoutActionTokens<T>(value: T): T {
  if (typeof value === 'string')
    return value.replace(ACTION_LINK_TOKEN, `$1${REDACTED_TOKEN}`) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => withoutActionTokens(v)) as T;
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, withoutActionTokens(v)]),
    ) as T;
  return value;
}

function parseObject(json: string): Record<string, unknown> | null {
  if (json === '') return null;
  try {
    const v = JSON.parse(json) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** One send with every channel's content, address, template version and status history; null when nothing is stored of it. */
export async function messageDetail(
  store: AnalyticsStore,
  database: string,
  sendId: string,
  opts: MessageLogOptions,
): Promise<MessageDetail | null> {
  assertDatabaseName(database);
  const db = database;
  const cutoff = cutoffOf(opts);
  const [send] = await store.query<SendRowOut>(
    `SELECT send_id, any(user_id) AS user_id, any(rule_id) AS rule_id, any(campaign_id) AS campaign_id,
            any(category) AS category, any(template) AS template, any(priority) AS priority,
            any(holdout) AS holdout, any(created_at_ms) AS created_at_ms, any(channels) AS channels
     FROM ${db}.sends WHERE send_id = {sendId:String} GROUP BY send_id`,
    { sendId },
  );
  // The user (the tables' key) when known: the log and the events are read by it.
  const byUser = send ? ' AND user_id = {userId:String}' : '';
  const params = send ? { sendId, userId: send.user_id, cutoff } : { sendId, cutoff };
  const body = (column: string) => `if(ts_ms >= {cutoff:UInt64}, ${column}, '')`;
  const [logged, outcomes] = await Promise.all([
    store.query<MessageRowOut>(
      `SELECT id, any(m_channel) AS channel, any(m_user_id) AS user_id, any(m_rule_id) AS rule_id,
              any(m_campaign_id) AS campaign_id, any(m_category) AS category, any(m_template) AS template,
              any(m_template_version) AS template_version, any(m_locale) AS locale,
              any(m_recipient) AS to_address, any(m_subject) AS subject, any(m_html) AS html,
              any(m_text) AS text, any(m_content) AS content, any(m_data) AS data, any(m_origin) AS origin,
              min(m_ts_ms) AS logged_at_ms
       FROM (
         SELECT id, channel AS m_channel, user_id AS m_user_id, rule_id AS m_rule_id,
                campaign_id AS m_campaign_id, category AS m_category, template AS m_template,
                template_version AS m_template_version, locale AS m_locale, recipient AS m_recipient,
                ${body('subject')} AS m_subject, ${body('html')} AS m_html, ${body('text')} AS m_text,
                ${body('content')} AS m_content, ${body('data')} AS m_data, origin AS m_origin,
                ts_ms AS m_ts_ms
         FROM ${db}.messages WHERE send_id = {sendId:String}${byUser}
       )
       GROUP BY id`,
      params,
    ),
    store.query<OutcomeRowOut>(
      `SELECT id, any(channel) AS channel, any(status) AS status, any(reason) AS reason,
              any(provider) AS provider, any(attempt) AS attempt, any(ts_ms) AS ts_ms,
              any(user_id) AS user_id, any(rule_id) AS rule_id
       FROM ${db}.deliveries WHERE send_id = {sendId:String}
       GROUP BY id`,
      { sendId },
    ),
  ]);
  const userId = send?.user_id ?? logged[0]?.user_id ?? outcomes[0]?.user_id;
  if (userId === undefined) return null;
  const engagements = await store.query<EngagementRowOut>(
    `SELECT id, any(e_type) AS type, any(e_ts_ms) AS ts_ms, any(e_channel) AS channel,
            any(e_url) AS url
     FROM (
       SELECT id, type AS e_type, ts_ms AS e_ts_ms,
              visitParamExtractString(properties, 'channel') AS e_channel,
              visitParamExtractString(properties, 'url') AS e_url
       FROM ${db}.events
       WHERE has(['message_opened', 'message_clicked'], type) AND user_id = {userId:String}
         AND source = 'tracker' AND visitParamExtractString(properties, 'sendId') = {sendId:String}
     )
     GROUP BY id`,
    { userId, sendId },
  );

  const first = logged[0];
  const channelsOf = new Set<string>([
    ...(send?.channels ?? []),
    ...logged.map((m) => m.channel),
    ...outcomes.map((o) => o.channel).filter((c) => c !== ''),
  ]);
  const channels = CHANNELS.filter((c) => channelsOf.has(c)).map((channel): ChannelMessage => {
    const m = logged.find((x) => x.channel === channel);
    // Delivery's outcomes, and opens and clicks from the tracker's events; an open that is in
    // both (the tracker publishes one of each) shows once.
    const seen = new Set<string>();
    const history: HistoryEntry[] = [];
    const add = (e: HistoryEntry) => {
      const k = `${e.status}:${e.ts}`;
      if (seen.has(k)) return;
      seen.add(k);
      history.push(e);
    };
    for (const o of outcomes.filter((x) => x.channel === channel))
      add({
        status: o.status,
        ts: Number(o.ts_ms),
        reason: orNull(o.reason),
        provider: orNull(o.provider),
        attempt: Number(o.attempt),
      });
    for (const e of engagements.filter((x) => x.channel === channel))
      add({
        status: ENGAGEMENT[e.type] ?? e.type,
        ts: Number(e.ts_ms),
        reason: orNull(e.url),
        provider: null,
        attempt: 0,
      });
    history.sort(
      (a, b) =>
        a.ts - b.ts ||
        STATUS_ORDER.indexOf(a.status as (typeof STATUS_ORDER)[number]) -
          STATUS_ORDER.indexOf(b.status as (typeof STATUS_ORDER)[number]),
    );
    const latest = history[history.length - 1];
    const sent = history.find((h) => h.status === 'sent');
    const loggedAt = m ? Number(m.logged_at_ms) : null;
    const bodyExpiresAt = loggedAt === null ? null : loggedAt + opts.bodyTtlDays * 86_400_000;
    const bodyExpired = loggedAt !== null && loggedAt < cutoff;
    const other = m && !bodyExpired ? parseObject(m.content) : null;
    const omitted = Array.isArray(other?.omitted)
      ? (other.omitted as unknown[]).filter((x): x is string => typeof x === 'string')
      : [];
    if (other) delete other.omitted;
    return {
      channel,
      status: latest?.status ?? null,
      reason: latest?.reason ?? null,
      to: orNull(m?.to_address),
      templateVersion: m && Number(m.template_version) > 0 ? Number(m.template_version) : null,
      locale: orNull(m?.locale),
      sentAt: sent?.ts ?? loggedAt,
      content:
        m && !bodyExpired
          ? withoutActionTokens({
              subject: orNull(m.subject),
              html: orNull(m.html),
              text: orNull(m.text),
              other: other ?? {},
            })
          : null,
      data:
        m && !bodyExpired && !omitted.includes('data')
          ? withoutActionTokens(parseObject(m.data))
          : null,
      omitted,
      bodyExpiresAt,
      bodyExpired,
      history,
    };
  });
  return {
    sendId,
    userId,
    ruleId: send?.rule_id ?? first?.rule_id ?? outcomes[0]!.rule_id,
    campaignId: orNull(send?.campaign_id ?? first?.campaign_id),
    category: send?.category ?? first?.category ?? '',
    template: send?.template ?? first?.template ?? '',
    priority: send ? Number(send.priority) : null,
    holdout: send ? Number(send.holdout) === 1 : false,
    createdAt: send ? Number(send.created_at_ms) : null,
    origin: orNull(first?.origin),
    channels,
  };
}

// ------------------------------------------------------------------ resend

/**
 * The sendId of a resend: derived from the original, the channel and the request's key (its
 * Idempotency-Key, else its request id), so the same request made twice names the same send
 * and delivery's claim sends it once.
 */
export function resendId(originalSendId: string, channel: Channel, key: string): string {
  const digest = createHash('sha256')
    .update(`${originalSendId}\n${channel}\n${key}`)
    .digest('hex')
    .slice(0, 24);
  return `resend:${digest}`;
}

/**
 * A new send command for one channel of a logged message: the same template at the logged
 * version, the logged data, the original's rule, campaign and category (so the policy chain
 * decides it as it would the original: consent, suppression, caps), `origin: resend:<sendId>`.
 * Throws a coded error saying why when the message cannot be resent.
 */
export function resendCommand(
  original: MessageDetail,
  channel: Channel,
  key: string,
  now: number,
): SendCommand {
  const m = original.channels.find((c) => c.channel === channel);
  const sent = original.channels.filter((c) => c.bodyExpiresAt !== null).map((c) => c.channel);
  if (!m || m.bodyExpiresAt === null)
    throw new LifecycleError(
      ErrorCodes.Conflict,
      `message ${original.sendId} was not sent on ${channel}${m?.status ? ` (its status: ${m.status}${m.reason ? `, ${m.reason}` : ''})` : ''}: only a message delivery recorded as sent can be resent${sent.length > 0 ? `; it was sent on ${sent.join(', ')}` : ''}`,
      { details: { field: 'channel' } },
    );
  if (m.bodyExpired)
    throw new LifecycleError(
      ErrorCodes.Conflict,
      `message ${original.sendId} on ${channel} is older than the message log keeps its content and data (LC_MESSAGE_BODY_TTL_DAYS): it can no longer be resent`,
    );
  if (m.data === null)
    throw new LifecycleError(
      ErrorCodes.Conflict,
      `message ${original.sendId} on ${channel} was logged without its data (too large for the log's record): it cannot be resent`,
    );
  const send: SendCommand = {
    sendId: resendId(original.sendId, channel, key),
    ruleId: original.ruleId,
    userId: original.userId,
    category: original.category,
    priority: original.priority ?? 100,
    template: original.template,
    channels: [channel],
    variant: null,
    holdout: false,
    triggeredBy: { eventId: `resend:${original.sendId}`, eventType: 'message.resend' },
    createdAt: now,
    expiresAt: null,
    data: m.data,
    origin: `resend:${original.sendId}`,
  };
  if (original.campaignId !== null) send.campaignId = original.campaignId;
  if (m.templateVersion !== null) send.templateVersion = m.templateVersion;
  return send;
}
