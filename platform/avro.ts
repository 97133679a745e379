// Avro encoding of the internal topics. The writer schema's id travels in the
// `lc-schema-id` header (a fingerprint of the canonical schema), so readers pick the
// right writer schema and evolve with resolving decoders. Free-form maps (properties,
// traits, context, data) travel as JSON strings: Avro has no "any" type.
import avro from 'avsc';
import { createHash } from 'node:crypto';
import type { DeliveryOutcome, MessageRecord, NormalisedEvent, SendCommand } from './contracts.ts';
import { SCHEMA_ID_HEADER } from './contracts.ts';
import { ErrorCodes, LifecycleError } from './errors.ts';

const nullable = (type: 'string' | 'long' | 'int'): avro.Schema => ['null', type];

export const EventAvro = avro.Type.forSchema({
  type: 'record',
  name: 'Event',
  namespace: 'lifecycle.v1',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'userId', type: 'string' },
    { name: 'anonymousId', type: nullable('string'), default: null },
    { name: 'type', type: 'string' },
    { name: 'ts', type: 'long' },
    { name: 'receivedAt', type: 'long' },
    { name: 'source', type: 'string' },
    { name: 'properties', type: 'string' },
    { name: 'traits', type: nullable('string'), default: null },
    { name: 'context', type: nullable('string'), default: null },
  ],
});

/** The fields of the send command's first schema, in their order. */
const SEND_FIELDS_V1: avro.schema.RecordType['fields'] = [
  { name: 'sendId', type: 'string' },
  { name: 'ruleId', type: 'string' },
  { name: 'userId', type: 'string' },
  { name: 'category', type: 'string' },
  { name: 'priority', type: 'int' },
  { name: 'template', type: 'string' },
  { name: 'channels', type: { type: 'array', items: 'string' } },
  { name: 'variant', type: nullable('string'), default: null },
  { name: 'holdout', type: 'boolean' },
  { name: 'triggeredByEventId', type: 'string' },
  { name: 'triggeredByEventType', type: 'string' },
  { name: 'createdAt', type: 'long' },
  { name: 'expiresAt', type: nullable('long'), default: null },
  { name: 'data', type: 'string' },
  { name: 'campaignId', type: nullable('string'), default: null },
  { name: 'goalEvent', type: nullable('string'), default: null },
  { name: 'goalWithinMs', type: nullable('long'), default: null },
];

const sendSchema = (fields: avro.schema.RecordType['fields']) =>
  avro.Type.forSchema({ type: 'record', name: 'Send', namespace: 'lifecycle.v1', fields });

/** The send command as written before sends named a template version and an origin: still read. */
const SendAvroV1 = sendSchema(SEND_FIELDS_V1);

const SEND_FIELDS_V2: avro.schema.RecordType['fields'] = [
  ...SEND_FIELDS_V1,
  { name: 'templateVersion', type: nullable('int'), default: null },
  { name: 'origin', type: nullable('string'), default: null },
];

/** The send command as written before sends named a message type: still read. */
const SendAvroV2 = sendSchema(SEND_FIELDS_V2);

export const SendAvro = sendSchema([
  ...SEND_FIELDS_V2,
  { name: 'messageType', type: nullable('string'), default: null },
]);

export const DeliveryAvro = avro.Type.forSchema({
  type: 'record',
  name: 'Delivery',
  namespace: 'lifecycle.v1',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'sendId', type: 'string' },
    { name: 'ruleId', type: 'string' },
    { name: 'userId', type: 'string' },
    { name: 'channel', type: nullable('string'), default: null },
    { name: 'status', type: 'string' },
    { name: 'reason', type: nullable('string'), default: null },
    { name: 'provider', type: nullable('string'), default: null },
    { name: 'attempt', type: 'int' },
    { name: 'ts', type: 'long' },
    { name: 'variant', type: nullable('string'), default: null },
    { name: 'holdout', type: 'boolean' },
  ],
});

/** One message-log record: what a send rendered, for support and audit (see MessageRecord). */
export const MessageAvro = avro.Type.forSchema({
  type: 'record',
  name: 'Message',
  namespace: 'lifecycle.v1',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'sendId', type: 'string' },
    { name: 'userId', type: 'string' },
    { name: 'ruleId', type: 'string' },
    { name: 'campaignId', type: nullable('string'), default: null },
    { name: 'category', type: 'string' },
    { name: 'channel', type: 'string' },
    { name: 'template', type: 'string' },
    { name: 'templateVersion', type: nullable('int'), default: null },
    { name: 'locale', type: 'string' },
    { name: 'to', type: nullable('string'), default: null },
    { name: 'subject', type: nullable('string'), default: null },
    { name: 'html', type: nullable('string'), default: null },
    { name: 'text', type: nullable('string'), default: null },
    { name: 'content', type: 'string' },
    { name: 'data', type: 'string' },
    { name: 'origin', type: nullable('string'), default: null },
    { name: 'ts', type: 'long' },
  ],
});

function schemaId(type: avro.Type): string {
  return createHash('sha256').update(JSON.stringify(type.schema())).digest('hex').slice(0, 16);
}

export interface Codec<T> {
  readonly schemaId: string;
  encode(value: T): Buffer;
  /** Throws LifecycleError(ErrorCodes.Decode) on bytes that are not this schema. */
  decode(bytes: Buffer, writerSchemaId?: string): T;
}

/**
 * A codec writing `type`; records written with one of the `previous` schemas (named by their
 * id header) are read through a resolving decoder, their new fields taking the defaults.
 */
function makeCodec<T, W>(
  type: avro.Type,
  to: (v: T) => W,
  from: (w: W) => T,
  previous: avro.Type[] = [],
): Codec<T> {
  const id = schemaId(type);
  const resolvers = new Map(previous.map((old) => [schemaId(old), type.createResolver(old)]));
  return {
    schemaId: id,
    encode: (value) => type.toBuffer(to(value)),
    decode: (bytes, writerSchemaId) => {
      const resolver =
        writerSchemaId === undefined || writerSchemaId === id
          ? undefined
          : resolvers.get(writerSchemaId);
      if (writerSchemaId !== undefined && writerSchemaId !== id && !resolver) {
        throw new LifecycleError(
          ErrorCodes.Decode,
          `unknown writer schema id ${writerSchemaId} (expected ${id})`,
        );
      }
      try {
        return from(type.fromBuffer(bytes, resolver) as W);
      } catch (err) {
        throw new LifecycleError(
          ErrorCodes.Decode,
          `not a valid ${type.name ?? 'record'}: ${(err as Error).message}`,
          { cause: err },
        );
      }
    },
  };
}

const json = (v: unknown) => JSON.stringify(v ?? {});
const parse = (s: string | null): Record<string, unknown> | undefined =>
  s == null ? undefined : (JSON.parse(s) as Record<string, unknown>);

interface EventWire {
  id: string;
  userId: string;
  anonymousId: string | null;
  type: string;
  ts: number;
  receivedAt: number;
  source: string;
  properties: string;
  traits: string | null;
  context: string | null;
}

export const eventCodec: Codec<NormalisedEvent> = makeCodec<NormalisedEvent, EventWire>(
  EventAvro,
  (e) => ({
    id: e.id,
    userId: e.userId,
    anonymousId: e.anonymousId ?? null,
    type: e.type,
    ts: e.ts,
    receivedAt: e.receivedAt,
    source: e.source,
    properties: json(e.properties),
    traits: e.traits ? json(e.traits) : null,
    context: e.context ? json(e.context) : null,
  }),
  (w) => {
    const e: NormalisedEvent = {
      id: w.id,
      userId: w.userId,
      type: w.type,
      ts: Number(w.ts),
      receivedAt: Number(w.receivedAt),
      source: w.source,
      properties: parse(w.properties) ?? {},
    };
    if (w.anonymousId != null) e.anonymousId = w.anonymousId;
    const traits = parse(w.traits);
    if (traits) e.traits = traits;
    const context = parse(w.context);
    if (context) e.context = context;
    return e;
  },
);

interface SendWire {
  sendId: string;
  ruleId: string;
  userId: string;
  category: string;
  priority: number;
  template: string;
  channels: string[];
  variant: string | null;
  holdout: boolean;
  triggeredByEventId: string;
  triggeredByEventType: string;
  createdAt: number;
  expiresAt: number | null;
  data: string;
  campaignId: string | null;
  goalEvent: string | null;
  goalWithinMs: number | null;
  templateVersion: number | null;
  origin: string | null;
  messageType: string | null;
}

export const sendCodec: Codec<SendCommand> = makeCodec<SendCommand, SendWire>(
  SendAvro,
  (s) => ({
    sendId: s.sendId,
    ruleId: s.ruleId,
    userId: s.userId,
    category: s.category,
    priority: s.priority,
    template: s.template,
    channels: [...s.channels],
    variant: s.variant,
    holdout: s.holdout,
    triggeredByEventId: s.triggeredBy.eventId,
    triggeredByEventType: s.triggeredBy.eventType,
    createdAt: s.createdAt,
    expiresAt: s.expiresAt,
    data: json(s.data),
    campaignId: s.campaignId ?? null,
    goalEvent: s.goal?.event ?? null,
    goalWithinMs: s.goal?.withinMs ?? null,
    templateVersion: s.templateVersion ?? null,
    origin: s.origin ?? null,
    messageType: s.messageType ?? null,
  }),
  (w) => {
    const s: SendCommand = {
      sendId: w.sendId,
      ruleId: w.ruleId,
      userId: w.userId,
      category: w.category,
      priority: w.priority,
      template: w.template,
      channels: w.channels as SendCommand['channels'],
      variant: w.variant,
      holdout: w.holdout,
      triggeredBy: { eventId: w.triggeredByEventId, eventType: w.triggeredByEventType },
      createdAt: Number(w.createdAt),
      expiresAt: w.expiresAt == null ? null : Number(w.expiresAt),
      data: parse(w.data) ?? {},
    };
    if (w.campaignId != null) s.campaignId = w.campaignId;
    if (w.goalEvent != null && w.goalWithinMs != null)
      s.goal = { event: w.goalEvent, withinMs: Number(w.goalWithinMs) };
    if (w.templateVersion != null) s.templateVersion = w.templateVersion;
    if (w.origin != null) s.origin = w.origin;
    if (w.messageType != null) s.messageType = w.messageType;
    return s;
  },
  [SendAvroV1, SendAvroV2],
);

export const deliveryCodec: Codec<DeliveryOutcome> = makeCodec<DeliveryOutcome, DeliveryOutcome>(
  DeliveryAvro,
  (d) => d,
  (w) => ({ ...w, ts: Number(w.ts), channel: w.channel as DeliveryOutcome['channel'] }),
);

interface MessageWire extends Omit<MessageRecord, 'content' | 'data' | 'channel'> {
  channel: string;
  content: string;
  data: string;
}

export const messageCodec: Codec<MessageRecord> = makeCodec<MessageRecord, MessageWire>(
  MessageAvro,
  (m) => ({ ...m, content: json(m.content), data: json(m.data) }),
  (w) => ({
    ...w,
    channel: w.channel as MessageRecord['channel'],
    ts: Number(w.ts),
    content: parse(w.content) ?? {},
    data: parse(w.data) ?? {},
  }),
);

export { SCHEMA_ID_HEADER };

/** Encodes with the schema-id header set, ready for Bus.publish. */
export function encodeWithHeader<T>(
  codec: Codec<T>,
  value: T,
): { value: Buffer; headers: Record<string, string> } {
  return { value: codec.encode(value), headers: { [SCHEMA_ID_HEADER]: codec.schemaId } };
}
