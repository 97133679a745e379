// One message of the send API as the caller writes it (`POST /v1/send`, one item of
// `/v1/send/batch`): its JSON Schema (validated strictly, unknown fields refused), the checks
// a schema cannot say (userId or `to`, address traits, data size and depth), and what it
// becomes: a recipient, channels, a category and a priority. Turning it into a send command
// needs the user directory and the templates (./plan.ts); this file needs neither.
import { createHash } from 'node:crypto';
import { Ajv, type ErrorObject } from 'ajv';
import { Type, type Static } from '@sinclair/typebox';
import { CHANNELS, type Channel } from '../../platform/contracts.ts';
import { ERROR_CODES, ErrorCodes, type ErrorCode } from '../../platform/errors.ts';
import { describeValidation } from '../../platform/http.ts';
import { jsonDepthExceeds, MAX_JSON_DEPTH } from '../../platform/json-depth.ts';
import type { MessageTypes } from '../../platform/message-types.ts';

export const SEND_CATEGORIES = ['transactional', 'marketing'] as const;
export type SendCategory = (typeof SEND_CATEGORIES)[number];
export const SEND_PRIORITIES = ['high', 'normal'] as const;
export type SendPriority = (typeof SEND_PRIORITIES)[number];

/** Messages one `/v1/send/batch` request may carry. */
export const MAX_BATCH_MESSAGES = 1000;
/** Largest `/v1/send/batch` body: 1000 messages of about 5 KB; one large message goes alone to `/v1/send`. */
export const MAX_BATCH_BODY_BYTES = 5 * 1024 * 1024;

/**
 * The priority a send command carries (what the frequency caps compare, 0-1000 as rules have):
 * an API send outranks rule sends of lower priority in a full channel, `high` outranks all.
 */
export const PRIORITY_VALUE: Readonly<Record<SendPriority, number>> = { high: 1000, normal: 500 };

/**
 * Traits that decide where a message goes (delivery/recipient.ts). A send to a userId goes to
 * the addresses the engine holds for that user, so suppressions, unsubscribes and consent
 * recorded for the user apply to the address that is used; a send to a raw address takes it
 * from `to`. The request's `data` may set neither.
 */
export const ADDRESS_TRAITS = ['email', 'phone', 'deviceTokens', 'webhookUrl'] as const;

const Str = (o: { minLength?: number; maxLength: number; description: string }) =>
  Type.String({ minLength: 1, ...o });

/** The JSON Schema of one message: the single definition, validated here and documented in OpenAPI. */
export const SendMessageSchema = Type.Object(
  {
    template: Str({
      maxLength: 200,
      description: 'Template name (a folder of `templates/`; GET /v1/templates lists them).',
    }),
    userId: Type.Optional(
      Str({
        maxLength: 512,
        description:
          'A user the engine knows: the message goes to the addresses in their traits, and their preferences, consent and suppressions apply. Give userId or `to`, not both.',
      }),
    ),
    to: Type.Optional(
      Type.Object(
        {
          email: Type.Optional(Str({ maxLength: 320, description: 'An email address.' })),
          phone: Type.Optional(
            Str({ maxLength: 32, description: 'A phone number in E.164 form (`+4915112345678`).' }),
          ),
        },
        {
          additionalProperties: false,
          minProperties: 1,
          maxProperties: 1,
          description:
            'One raw address, for recipients who are not users (an invited colleague, a guest checkout). The address gets a recipient id of its own (returned as `userId`), under which its unsubscribes, suppressions (bounces, complaints) and frequency caps are kept. Email goes on the email channel, phone on sms.',
        },
      ),
    ),
    category: Type.Unsafe<SendCategory>({
      type: 'string',
      enum: [...SEND_CATEGORIES],
      description:
        '`transactional` (receipts, password resets: sent without marketing opt-in and without frequency caps or quiet hours, but never to a suppressed address) or `marketing` (only to recipients who opted in for the channel and did not unsubscribe). Required: there is no safe default.',
    }),
    messageType: Type.Optional(
      Str({
        maxLength: 64,
        description:
          "A declared message type (LC_MESSAGE_TYPES_FILE: product_news, tips, billing...) of the message's category: a user who switched it off on a channel, or never opted in to an opt-in type, is not sent it there (suppressed, reason `message_type_off` or `message_type_no_opt_in`). Types users cannot switch off (billing, security) always go.",
      }),
    ),
    channels: Type.Optional(
      Type.Array(Type.Unsafe<Channel>({ type: 'string', enum: [...CHANNELS] }), {
        minItems: 1,
        uniqueItems: true,
        description:
          "Channels to send on. Default: for a userId, every channel the template has content for except webhook; for `to`, the address's channel.",
      }),
    ),
    priority: Type.Optional(
      Type.Unsafe<SendPriority>({
        type: 'string',
        enum: [...SEND_PRIORITIES],
        default: 'normal',
        description:
          '`high` goes through a topic of its own that delivery reads apart, so it never waits behind the backlog of rule sends (password resets, one-time codes). Default `normal`.',
      }),
    ),
    data: Type.Optional(
      Type.Record(Type.String(), Type.Unknown(), {
        description:
          'Template data, e.g. `{"event": {"properties": {"amount": 49}}}`. For a userId it is laid over `{"user": <their traits>}` (objects merge key by key); `data.user` may add or change traits for this message but not the address traits email, phone, deviceTokens, webhookUrl, nor may `data.webhookUrl` be set. At most LC_SEND_MAX_DATA_BYTES as JSON, 32 levels deep.',
      }),
    ),
  },
  { additionalProperties: false },
);
export type SendMessage = Static<typeof SendMessageSchema>;

const ajv = new Ajv({ allErrors: false, strict: false });
const checkMessage = ajv.compile<SendMessage>(SendMessageSchema);

/** A refusal of one message: the coded error, its status and the field at fault. */
export interface SendRefusal {
  status: number;
  code: ErrorCode;
  message: string;
  field: string;
}

export function refusal(code: ErrorCode, message: string, field: string): SendRefusal {
  return { status: ERROR_CODES[code].status, code, message, field };
}

export const isRefusal = (v: unknown): v is SendRefusal =>
  typeof v === 'object' && v !== null && 'code' in v && 'status' in v;

/** Ajv's first error as a message that says what to send instead. */
function explain(
  errors: readonly ErrorObject[],
  prefix: string,
): { field: string; message: string } {
  const e = errors[0];
  const described = describeValidation(errors as Parameters<typeof describeValidation>[0], prefix);
  if (!e) return described;
  if (e.keyword === 'enum') {
    const allowed = (e.params as { allowedValues: unknown[] }).allowedValues;
    return {
      field: described.field,
      message: `${described.field} must be one of ${allowed.join(', ')}`,
    };
  }
  if (e.keyword === 'additionalProperties') {
    const extra = String((e.params as { additionalProperty: string }).additionalProperty);
    const field = `${described.field === 'body' ? '' : `${described.field}.`}${extra}`.replace(
      /^\./,
      '',
    );
    const known = e.instancePath.endsWith('/to')
      ? 'to takes one of email, phone'
      : `a message takes ${Object.keys(SendMessageSchema.properties).join(', ')}`;
    return { field, message: `unknown field ${field}: ${known}` };
  }
  if (
    (e.keyword === 'minProperties' || e.keyword === 'maxProperties') &&
    /\/to$/.test(e.instancePath)
  )
    return {
      field: described.field,
      message: `${described.field} must hold exactly one address, email or phone (one message per address; send several in /v1/send/batch)`,
    };
  return described;
}

/** An address normalised for identity: what two spellings of one address have in common. */
export interface RawAddress {
  kind: 'email' | 'phone';
  /** As the caller wrote it (trimmed): where the message goes. */
  address: string;
  /** Lower-cased email, or the phone's digits with its `+`: what the recipient id is made of. */
  normalised: string;
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const E164 = /^\+[1-9]\d{6,14}$/;

/** The recipient id of a raw address: stable, so caps, suppressions and unsubscribes follow the address. */
export function recipientIdOf(address: Pick<RawAddress, 'kind' | 'normalised'>): string {
  return `recipient:${createHash('sha256').update(`${address.kind}:${address.normalised}`).digest('hex')}`;
}

function rawAddress(to: NonNullable<SendMessage['to']>, prefix: string): RawAddress | SendRefusal {
  if (to.email !== undefined) {
    const address = to.email.trim();
    if (!EMAIL.test(address))
      return refusal(
        ErrorCodes.BadRequest,
        `${prefix}to.email "${address}" is not an email address`,
        `${prefix}to.email`,
      );
    return { kind: 'email', address, normalised: address.toLowerCase() };
  }
  const address = to.phone!.trim();
  const digits = address.replace(/[\s().-]/g, '');
  if (!E164.test(digits))
    return refusal(
      ErrorCodes.BadRequest,
      `${prefix}to.phone "${address}" is not a phone number in E.164 form (a + and the country code, e.g. +4915112345678)`,
      `${prefix}to.phone`,
    );
  return { kind: 'phone', address: digits, normalised: digits };
}

const CHANNEL_OF: Readonly<Record<RawAddress['kind'], Channel>> = { email: 'email', phone: 'sms' };

/** A message that passed every check that needs neither the user directory nor the templates. */
export interface CheckedMessage {
  template: string;
  category: SendCategory;
  /** A declared message type, checked against the category and channels. */
  messageType?: string;
  priority: SendPriority;
  /** As asked for; null: the default (./plan.ts decides, it needs the template). */
  channels: Channel[] | null;
  recipient: { userId: string } | { raw: RawAddress };
  data: Record<string, unknown>;
}

/**
 * Checks one message; `prefix` names it in errors (`messages[3].`). Returns the refusal with
 * the field at fault rather than throwing: a batch answers per message.
 */
export function checkSendMessage(
  value: unknown,
  opts: { maxDataBytes: number; prefix?: string; messageTypes?: MessageTypes },
): CheckedMessage | SendRefusal {
  const prefix = opts.prefix ?? '';
  const where = prefix.replace(/\.$/, '') || 'body';
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
    return refusal(
      ErrorCodes.BadRequest,
      `${where} must be an object (template, userId or to, category, ...), not ${got}`,
      where,
    );
  }
  // The depth first: what follows walks the data.
  if (jsonDepthExceeds(value, MAX_JSON_DEPTH))
    return refusal(
      ErrorCodes.BadRequest,
      `${prefix}data nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels (the message object is the first)`,
      `${prefix}data`,
    );
  if (!checkMessage(value)) {
    const { field, message } = explain(checkMessage.errors ?? [], where === 'body' ? '' : where);
    return refusal(ErrorCodes.BadRequest, message, field);
  }
  const m = value;
  if (m.userId === undefined && m.to === undefined)
    return refusal(
      ErrorCodes.BadRequest,
      `${where} needs a recipient: userId (a user the engine knows) or to (one raw address, {"email": ...} or {"phone": ...})`,
      `${prefix}userId`,
    );
  if (m.userId !== undefined && m.to !== undefined)
    return refusal(
      ErrorCodes.BadRequest,
      `${where} gives both userId and to: a message goes to a user's own addresses (userId) or to a raw address (to), not both`,
      `${prefix}to`,
    );
  const bytes = m.data === undefined ? 0 : Buffer.byteLength(JSON.stringify(m.data));
  if (bytes > opts.maxDataBytes)
    return refusal(
      ErrorCodes.PayloadTooLarge,
      `${prefix}data is ${bytes} bytes as JSON, more than the ${opts.maxDataBytes} bytes a message may carry (LC_SEND_MAX_DATA_BYTES): link large content from the data instead`,
      `${prefix}data`,
    );
  const user = m.data?.user;
  if (user !== undefined && (typeof user !== 'object' || user === null || Array.isArray(user)))
    return refusal(
      ErrorCodes.BadRequest,
      `${prefix}data.user must be an object of traits`,
      `${prefix}data.user`,
    );
  for (const trait of ADDRESS_TRAITS) {
    if (user && Object.hasOwn(user, trait))
      return refusal(
        ErrorCodes.BadRequest,
        `${prefix}data.user.${trait} cannot be set by a send: ${m.userId !== undefined ? "a message to a userId goes to the user's own addresses, whose unsubscribes and suppressions apply; to reach another address, send to it with `to`" : 'the address comes from `to`'}`,
        `${prefix}data.user.${trait}`,
      );
  }
  if (m.data && Object.hasOwn(m.data, 'webhookUrl'))
    return refusal(
      ErrorCodes.BadRequest,
      `${prefix}data.webhookUrl cannot be set by a send: webhooks go to the user's own webhookUrl trait`,
      `${prefix}data.webhookUrl`,
    );
  if (m.messageType !== undefined && opts.messageTypes) {
    const type = opts.messageTypes.get(m.messageType);
    const names = opts.messageTypes.list.map((t) => t.id);
    if (!type)
      return refusal(
        ErrorCodes.UnknownMessageType,
        `${prefix}messageType "${m.messageType}" is not a declared message type (${names.join(', ') || 'none are declared'})`,
        `${prefix}messageType`,
      );
    if (type.category !== m.category)
      return refusal(
        ErrorCodes.UnknownMessageType,
        `${prefix}messageType "${type.id}" is ${type.category}, the message ${m.category}: send it as ${type.category}, or name a ${m.category} type`,
        `${prefix}messageType`,
      );
    const off = type.switchable
      ? m.channels?.find((c) => type.channels[c] === undefined)
      : undefined;
    if (off !== undefined)
      return refusal(
        ErrorCodes.UnknownMessageType,
        `${prefix}messageType "${type.id}" is not sent on ${off} (its channels: ${Object.keys(type.channels).join(', ')}): users could not choose it there`,
        `${prefix}channels`,
      );
  }
  let recipient: CheckedMessage['recipient'];
  if (m.to !== undefined) {
    const raw = rawAddress(m.to, prefix);
    if (isRefusal(raw)) return raw;
    const served = CHANNEL_OF[raw.kind];
    const other = m.channels?.find((c) => c !== served);
    if (other !== undefined)
      return refusal(
        ErrorCodes.BadRequest,
        `${prefix}to.${raw.kind} is an address for the ${served} channel only, not ${other}: a raw address takes one channel (send ${other} to a userId, or to the address that channel uses)`,
        `${prefix}channels`,
      );
    recipient = { raw };
  } else {
    recipient = { userId: m.userId! };
  }
  return {
    template: m.template,
    category: m.category,
    ...(m.messageType !== undefined ? { messageType: m.messageType } : {}),
    priority: m.priority ?? 'normal',
    channels: m.channels ? [...m.channels] : null,
    recipient,
    data: m.data ?? {},
  };
}

/** JSON with object keys sorted at every level: one text per value, whatever the key order it was written in. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * What an Idempotency-Key is bound to: the route and the body, as JSON with sorted keys (a
 * retry that serialises the same body in another key order is the same request).
 */
export function requestFingerprint(route: string, body: unknown): string {
  return createHash('sha256')
    .update(`${route}\n${canonicalJson(body)}`)
    .digest('hex');
}

/** An Idempotency-Key header: 1 to 255 visible ASCII characters (spaces inside allowed), as Knock takes it. */
export function checkIdempotencyKey(header: unknown): string | null | SendRefusal {
  if (header === undefined) return null;
  const value = Array.isArray(header) ? header[0] : header;
  if (typeof value !== 'string' || !/^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$/.test(value))
    return refusal(
      ErrorCodes.BadRequest,
      'Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID, or e.g. order-placed:user-123:order-456), without leading or trailing spaces',
      'Idempotency-Key',
    );
  if (Array.isArray(header) && header.length > 1)
    return refusal(
      ErrorCodes.BadRequest,
      'send one Idempotency-Key header, not several',
      'Idempotency-Key',
    );
  return value;
}
