// Message contracts between rooms. TypeBox schemas are the single definition: the
// TypeScript types derive from them, HTTP validation uses them, and the Avro wire
// schemas in ./avro.ts are checked against them by a test.
import { Type, type Static } from '@sinclair/typebox';

const Json = Type.Record(Type.String(), Type.Unknown());

/** An event after ingestion, whatever its source (HTTP, CDC, tracker, timer, scheduler). */
export const NormalisedEventSchema = Type.Object({
  /** Stable id: Segment messageId, CDC (source, lsn, table, pk), or derived for internal events. */
  id: Type.String({ minLength: 1 }),
  userId: Type.String({ minLength: 1 }),
  anonymousId: Type.Optional(Type.String()),
  /** Event name as sent (`Feature Used`), or `identify`, `page`, `screen`, `group`, `alias`, `timer.fired`, ... */
  type: Type.String({ minLength: 1 }),
  /** Event time, epoch milliseconds (skew-corrected for HTTP). */
  ts: Type.Integer(),
  receivedAt: Type.Integer(),
  /** `http:<source>`, `cdc:<connector>`, `tracker`, `engine`, `scheduler`, `simulate`. */
  source: Type.String(),
  properties: Json,
  traits: Type.Optional(Json),
  context: Type.Optional(Json),
});
export type NormalisedEvent = Static<typeof NormalisedEventSchema>;

export const Channel = Type.Union([
  Type.Literal('email'),
  Type.Literal('inapp'),
  Type.Literal('webhook'),
  Type.Literal('sms'),
  Type.Literal('push'),
]);
export type Channel = Static<typeof Channel>;
export const CHANNELS: readonly Channel[] = ['email', 'inapp', 'webhook', 'sms', 'push'];

/** What the engine asks delivery to do. `sendId` is deterministic: (ruleId, userId, trigger id). */
export const SendCommandSchema = Type.Object({
  sendId: Type.String({ minLength: 1 }),
  ruleId: Type.String({ minLength: 1 }),
  userId: Type.String({ minLength: 1 }),
  category: Type.String({ minLength: 1 }),
  priority: Type.Integer(),
  template: Type.String({ minLength: 1 }),
  channels: Type.Array(Channel, { minItems: 1 }),
  variant: Type.Union([Type.String(), Type.Null()]),
  holdout: Type.Boolean(),
  triggeredBy: Type.Object({ eventId: Type.String(), eventType: Type.String() }),
  /** Epoch ms: event time, or timer fire time for delayed triggers. */
  createdAt: Type.Integer(),
  /** Epoch ms after which the send is stale and dropped (null: never). */
  expiresAt: Type.Union([Type.Integer(), Type.Null()]),
  /** Personalisation data: user traits snapshot plus event properties. */
  data: Json,
  campaignId: Type.Optional(Type.String()),
  goal: Type.Optional(Type.Object({ event: Type.String(), withinMs: Type.Integer() })),
});
export type SendCommand = Static<typeof SendCommandSchema>;

export const DeliveryStatus = Type.Union(
  ['queued', 'sent', 'delivered', 'deferred', 'suppressed', 'holdout', 'failed', 'bounced', 'complained', 'opened', 'clicked', 'unsubscribed', 'read'].map(
    (s) => Type.Literal(s),
  ),
);
export type DeliveryStatus =
  | 'queued'
  | 'sent'
  | 'delivered'
  | 'deferred'
  | 'suppressed'
  | 'holdout'
  | 'failed'
  | 'bounced'
  | 'complained'
  | 'opened'
  | 'clicked'
  | 'unsubscribed'
  | 'read';

export const DeliveryOutcomeSchema = Type.Object({
  /** Stable id of this outcome: sendId + status (+ attempt) so the sink dedupes replays. */
  id: Type.String(),
  sendId: Type.String(),
  ruleId: Type.String(),
  userId: Type.String(),
  channel: Type.Union([Channel, Type.Null()]),
  status: DeliveryStatus,
  reason: Type.Union([Type.String(), Type.Null()]),
  provider: Type.Union([Type.String(), Type.Null()]),
  attempt: Type.Integer(),
  ts: Type.Integer(),
  variant: Type.Union([Type.String(), Type.Null()]),
  holdout: Type.Boolean(),
});
export type DeliveryOutcome = Static<typeof DeliveryOutcomeSchema>;

/** Internal topic names, derived from one configurable prefix. */
export function topics(prefix: string) {
  return {
    events: `${prefix}.events`,
    sends: `${prefix}.sends`,
    deliveries: `${prefix}.deliveries`,
    dlq: `${prefix}.dlq`,
    campaigns: `${prefix}.campaigns`,
  } as const;
}
export type Topics = ReturnType<typeof topics>;

/** Headers every DLQ record carries. */
export const DlqHeaders = {
  reason: 'lc-dlq-reason',
  sourceTopic: 'lc-dlq-source-topic',
  sourcePartition: 'lc-dlq-source-partition',
  sourceOffset: 'lc-dlq-source-offset',
  stage: 'lc-dlq-stage',
} as const;

/** Header naming the Avro schema a value was written with. */
export const SCHEMA_ID_HEADER = 'lc-schema-id';
