// Segment HTTP API messages: their JSON Schemas (validated by fastify's own Ajv) and the
// pure translation of one accepted message into the normalised event every room reads.
import { randomUUID } from 'node:crypto';
import { Type, type Static, type TObject } from '@sinclair/typebox';
import {
  RESERVED_EVENT_TYPES,
  httpSource,
  isReservedEventType,
  type NormalisedEvent,
  type WriteKeyKind,
} from '../../platform/contracts.ts';
import { ErrorCodes, type ErrorCode } from '../../platform/errors.ts';

const Obj = (description: string) => Type.Record(Type.String(), Type.Unknown(), { description });
// `type: [string, null]` rather than a union: analytics.js sends `userId: null` for anonymous
// visitors, and Ajv coerces numeric ids to strings only for a plain `type` list.
const NullableString = (description: string, maxLength = 256) =>
  Type.Unsafe<string | null>({ type: ['string', 'null'], maxLength, description });
const IsoTime = (description: string) => Type.String({ maxLength: 64, description });

const common = {
  messageId: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 256,
      description:
        'Unique id of the message; becomes the event id (generated when absent). Retries must reuse it.',
    }),
  ),
  userId: Type.Optional(NullableString('Your id of the user. userId or anonymousId is required.')),
  anonymousId: Type.Optional(
    NullableString('Device or visitor id. userId or anonymousId is required.'),
  ),
  timestamp: Type.Optional(
    IsoTime('ISO 8601 time the event happened (on the client clock when sentAt is also sent).'),
  ),
  originalTimestamp: Type.Optional(
    IsoTime('ISO 8601 time on the client device when the call was made.'),
  ),
  sentAt: Type.Optional(
    IsoTime(
      'ISO 8601 time on the client device when the request was sent; used for clock-skew correction.',
    ),
  ),
  context: Type.Optional(Obj('Segment context (library, app, device, locale, campaign, ...).')),
  integrations: Type.Optional(Obj('Destination switches; accepted and ignored.')),
  writeKey: Type.Optional(
    Type.String({
      description:
        'Write key in the body, as Segment libraries send it; HTTP Basic or Bearer also work.',
    }),
  ),
};

const reservedNames = Object.keys(RESERVED_EVENT_TYPES).join(', ');
export const TrackSchema = Type.Object(
  {
    ...common,
    type: Type.Optional(Type.Literal('track')),
    event: Type.String({
      minLength: 1,
      maxLength: 200,
      description: `Event name, e.g. "Order Completed". The names of events the product makes itself are refused (400, LC_ERR_RESERVED_EVENT): ${reservedNames}.`,
    }),
    properties: Type.Optional(Obj('Event properties.')),
  },
  { title: 'SegmentTrack', description: 'A user action.' },
);
export const IdentifySchema = Type.Object(
  {
    ...common,
    type: Type.Optional(Type.Literal('identify')),
    traits: Type.Optional(Obj('User traits (email, plan, ...).')),
  },
  { title: 'SegmentIdentify', description: 'Who the user is.' },
);
const pageLike = {
  ...common,
  name: Type.Optional(NullableString('Page or screen name.')),
  category: Type.Optional(NullableString('Page or screen category.')),
  properties: Type.Optional(Obj('Page or screen properties.')),
};
export const PageSchema = Type.Object(
  { ...pageLike, type: Type.Optional(Type.Literal('page')) },
  { title: 'SegmentPage', description: 'A web page view.' },
);
export const ScreenSchema = Type.Object(
  { ...pageLike, type: Type.Optional(Type.Literal('screen')) },
  { title: 'SegmentScreen', description: 'A mobile screen view.' },
);
export const GroupSchema = Type.Object(
  {
    ...common,
    type: Type.Optional(Type.Literal('group')),
    groupId: Type.String({
      minLength: 1,
      maxLength: 256,
      description: 'Account, company or team id.',
    }),
    traits: Type.Optional(Obj('Traits of the group.')),
  },
  { title: 'SegmentGroup', description: 'Associates the user with a group.' },
);
export const AliasSchema = Type.Object(
  {
    ...common,
    type: Type.Optional(Type.Literal('alias')),
    previousId: Type.String({
      minLength: 1,
      maxLength: 256,
      description: 'The previous id of the user.',
    }),
  },
  { title: 'SegmentAlias', description: 'Merges a previous identity into userId.' },
);
const batchEnvelope = {
  sentAt: Type.Optional(
    IsoTime('Client time when the batch was sent, applied to messages without their own.'),
  ),
  context: Type.Optional(Obj('Merged into the context of every message (the message wins).')),
  integrations: Type.Optional(Obj('Accepted and ignored.')),
  writeKey: Type.Optional(
    Type.String({
      description:
        'Write key in the body, as analytics-node sends it; HTTP Basic or Bearer also work.',
    }),
  ),
};
const batchDescription = 'Up to the batch size limit of messages of any type.';

/**
 * What the batch routes validate: any array. Each item is validated on its own against the
 * schema of its `type` (and a non-object item is rejected on its own), so one bad message
 * never refuses the valid ones.
 */
export const BatchSchema = Type.Object(
  {
    batch: Type.Array(Type.Unknown(), {
      description: 'Messages, each with a `type`; each is validated on its own.',
    }),
    ...batchEnvelope,
  },
  { title: 'SegmentBatch', description: batchDescription },
);

export const MESSAGE_TYPES = ['track', 'identify', 'page', 'screen', 'group', 'alias'] as const;
export type MessageType = (typeof MESSAGE_TYPES)[number];
export const MESSAGE_SCHEMAS: Record<MessageType, TObject> = {
  track: TrackSchema,
  identify: IdentifySchema,
  page: PageSchema,
  screen: ScreenSchema,
  group: GroupSchema,
  alias: AliasSchema,
};

/** The batch as the OpenAPI document shows it: each item one of the six messages, with its `type` required. */
export const BatchDocSchema = Type.Object(
  {
    batch: Type.Array(
      // oneOf, not TypeBox's anyOf: the required `type` literal makes exactly one match.
      Type.Unsafe<SegmentMessage>({
        oneOf: MESSAGE_TYPES.map((t) => {
          const { title, description } = MESSAGE_SCHEMAS[t];
          return Type.Object(
            { ...MESSAGE_SCHEMAS[t].properties, type: Type.Literal(t) },
            { title: `${title}InBatch`, description },
          );
        }),
      }),
      {
        description:
          'Messages, each with a `type`; each is validated on its own: invalid ones are listed in `rejected`, the others stored.',
      },
    ),
    ...batchEnvelope,
  },
  { title: 'SegmentBatch', description: batchDescription },
);

type Common = Static<typeof IdentifySchema>;
export type SegmentMessage = Common & {
  type?: string;
  event?: string;
  properties?: Record<string, unknown>;
  traits?: Record<string, unknown>;
  name?: string | null;
  category?: string | null;
  groupId?: string;
  previousId?: string;
};

/** A message the API refused, with the field at fault (and the status, when not 400). */
export interface Rejection {
  code: ErrorCode;
  field: string;
  message: string;
  status?: number;
}

function parseTime(value: string | undefined, field: string): number | Rejection | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  if (Number.isNaN(ms))
    return {
      code: ErrorCodes.BadRequest,
      field,
      message: `${field} is not an ISO 8601 date: ${JSON.stringify(value.slice(0, 40))}`,
    };
  return ms;
}

const isRejection = (v: unknown): v is Rejection =>
  typeof v === 'object' && v !== null && 'code' in v;

/**
 * Event time as Segment computes it: the client's own time corrected by the skew between
 * the client clock (`sentAt`) and ours (`receivedAt`): receivedAt - (sentAt - originalTimestamp).
 * `originalTimestamp` defaults to `timestamp`, which is what the SDKs stamp on each call.
 * Without sentAt the client time is taken as is; without any time, receivedAt.
 */
export function eventTime(
  msg: Pick<SegmentMessage, 'timestamp' | 'originalTimestamp' | 'sentAt'>,
  receivedAt: number,
  batchSentAt?: string,
): number | Rejection {
  const original = parseTime(
    msg.originalTimestamp ?? msg.timestamp,
    msg.originalTimestamp !== undefined ? 'originalTimestamp' : 'timestamp',
  );
  if (isRejection(original)) return original;
  const sentAt = parseTime(msg.sentAt ?? batchSentAt, 'sentAt');
  if (isRejection(sentAt)) return sentAt;
  if (original === undefined) return receivedAt;
  if (sentAt === undefined) return original;
  return receivedAt - (sentAt - original);
}

export interface NormaliseInput {
  source: string;
  /** The write key's kind, recorded in the event's source (default `client`). */
  kind?: WriteKeyKind;
  receivedAt: number;
  batchSentAt?: string;
  batchContext?: Record<string, unknown>;
  newId?: () => string;
}

/**
 * An app may not send what only the product makes (an erasure, a timer firing, a click):
 * downstream rooms drop such events from the wrong origin anyway, but the app learns it here
 * instead of seeing them vanish into the DLQ. Only `track` names its type; page and screen
 * names are properties.
 */
function reservedRefusal(type: string): Rejection {
  const makers = RESERVED_EVENT_TYPES[type]!.join(', ');
  return {
    code: ErrorCodes.ReservedEvent,
    field: 'event',
    message: `event ${JSON.stringify(type)} is a reserved type, made by the product only (by ${makers}); apps cannot send it`,
  };
}

/**
 * One schema-valid Segment message -> normalised event. Anonymous messages keep their
 * anonymousId as the user id (the engine's state key) until an identify/alias links them.
 */
export function normalise(
  type: MessageType,
  msg: SegmentMessage,
  input: NormaliseInput,
): NormalisedEvent | Rejection {
  if (type === 'track' && isReservedEventType(msg.event!)) return reservedRefusal(msg.event!);
  const userId = msg.userId || msg.anonymousId;
  if (!userId)
    return {
      code: ErrorCodes.BadRequest,
      field: 'userId',
      message: 'userId or anonymousId is required',
    };
  const ts = eventTime(msg, input.receivedAt, input.batchSentAt);
  if (isRejection(ts)) return ts;
  const event: NormalisedEvent = {
    id: msg.messageId ?? (input.newId ?? randomUUID)(),
    userId,
    type,
    ts,
    receivedAt: input.receivedAt,
    source: httpSource(input.source, input.kind ?? 'client'),
    properties: {},
  };
  if (msg.anonymousId) event.anonymousId = msg.anonymousId;
  const context = input.batchContext ? { ...input.batchContext, ...msg.context } : msg.context;
  if (context && Object.keys(context).length > 0) event.context = context;
  switch (type) {
    case 'track':
      event.type = msg.event!;
      event.properties = msg.properties ?? {};
      break;
    case 'identify':
      event.traits = msg.traits ?? {};
      break;
    case 'page':
    case 'screen': {
      const props: Record<string, unknown> = { ...msg.properties };
      if (msg.name != null) props.name = msg.name;
      if (msg.category != null) props.category = msg.category;
      event.properties = props;
      break;
    }
    case 'group':
      // Group traits describe the account, not the user: they stay out of user traits.
      event.properties = { groupId: msg.groupId, traits: msg.traits ?? {} };
      break;
    case 'alias':
      event.properties = { previousId: msg.previousId };
      break;
  }
  return event;
}

export { isRejection };
