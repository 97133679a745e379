// Input lines of `lifecycle simulate`: Segment-style messages (identify, track, page, screen,
// group, alias, as Segment SDKs and exports write them) or already normalised events. Each
// line becomes one NormalisedEvent or a reason it was rejected.
import type { NormalisedEvent } from '../../platform/contracts.ts';
import { deterministicId } from './ids.ts';

export type ParsedLine =
  | { ok: true; event: NormalisedEvent; format: 'segment' | 'normalised' }
  | { ok: false; reason: string };

const SEGMENT_TYPES = new Set(['identify', 'track', 'page', 'screen', 'group', 'alias']);

export function parseInputLine(text: string, source = 'simulate'): ParsedLine {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `not JSON: ${(err as Error).message}` };
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    return { ok: false, reason: 'not a JSON object' };
  const o = raw as Record<string, unknown>;
  // A normalised event carries its time as epoch ms in `ts`; Segment messages use ISO `timestamp`.
  if (typeof o.ts === 'number' && typeof o.id === 'string') return fromNormalised(o, source);
  return fromSegment(o, text, source);
}

function fromNormalised(o: Record<string, unknown>, source: string): ParsedLine {
  if (o.id === '') return { ok: false, reason: 'id is empty' };
  const userId = idString(o.userId);
  if (!userId) return { ok: false, reason: 'userId is missing or empty' };
  if (typeof o.type !== 'string' || o.type === '')
    return { ok: false, reason: 'type is missing or empty' };
  if (!Number.isSafeInteger(o.ts))
    return { ok: false, reason: 'ts must be an integer (epoch milliseconds)' };
  const properties = optionalObject(o.properties, 'properties');
  if (typeof properties === 'string') return { ok: false, reason: properties };
  const traits = optionalObject(o.traits, 'traits');
  if (typeof traits === 'string') return { ok: false, reason: traits };
  const context = optionalObject(o.context, 'context');
  if (typeof context === 'string') return { ok: false, reason: context };
  const event: NormalisedEvent = {
    id: o.id as string,
    userId,
    type: o.type,
    ts: o.ts as number,
    receivedAt: typeof o.receivedAt === 'number' ? o.receivedAt : (o.ts as number),
    source: typeof o.source === 'string' ? o.source : source,
    properties: properties ?? {},
  };
  if (typeof o.anonymousId === 'string') event.anonymousId = o.anonymousId;
  if (traits) event.traits = traits;
  if (context) event.context = context;
  return { ok: true, event, format: 'normalised' };
}

function fromSegment(o: Record<string, unknown>, text: string, source: string): ParsedLine {
  const kind =
    typeof o.type === 'string' ? o.type.toLowerCase() : typeof o.event === 'string' ? 'track' : '';
  if (!SEGMENT_TYPES.has(kind)) {
    return {
      ok: false,
      reason: `unknown message: type must be one of ${[...SEGMENT_TYPES].join(', ')} (Segment) or the line must be a normalised event with id and ts`,
    };
  }
  const anonymousId = idString(o.anonymousId);
  const userId = idString(o.userId) ?? anonymousId;
  if (!userId) return { ok: false, reason: 'userId or anonymousId is required' };
  const when = o.timestamp ?? o.originalTimestamp ?? o.sentAt ?? o.receivedAt;
  const ts = typeof when === 'string' ? Date.parse(when) : typeof when === 'number' ? when : NaN;
  if (!Number.isSafeInteger(ts))
    return {
      ok: false,
      reason:
        when === undefined
          ? 'timestamp is required'
          : `timestamp ${JSON.stringify(when)} is not an ISO date`,
    };
  const properties = optionalObject(o.properties, 'properties');
  if (typeof properties === 'string') return { ok: false, reason: properties };
  const traits = optionalObject(o.traits, 'traits');
  if (typeof traits === 'string') return { ok: false, reason: traits };
  const context = optionalObject(o.context, 'context');
  if (typeof context === 'string') return { ok: false, reason: context };
  // Without a messageId the line itself is the identity: a repeated line is a duplicate.
  const id = idString(o.messageId) ?? deterministicId('simulate-line', text);

  let type: string = kind;
  const props: Record<string, unknown> = { ...(properties ?? {}) };
  let eventTraits: Record<string, unknown> | undefined;
  switch (kind) {
    case 'track':
      if (typeof o.event !== 'string' || o.event === '')
        return { ok: false, reason: 'track needs an event name in "event"' };
      type = o.event;
      break;
    case 'identify':
      eventTraits = traits ?? (context?.traits as Record<string, unknown> | undefined) ?? {};
      break;
    case 'page':
    case 'screen':
      if (typeof o.name === 'string') props.name = o.name;
      if (typeof o.category === 'string') props.category = o.category;
      break;
    case 'group': {
      const groupId = idString(o.groupId);
      if (!groupId) return { ok: false, reason: 'group needs a groupId' };
      props.groupId = groupId;
      eventTraits = traits ?? {};
      break;
    }
    case 'alias': {
      const previousId = idString(o.previousId);
      if (!previousId) return { ok: false, reason: 'alias needs a previousId' };
      props.previousId = previousId;
      break;
    }
  }
  const event: NormalisedEvent = {
    id,
    userId,
    type,
    ts,
    receivedAt: ts,
    source,
    properties: props,
  };
  if (anonymousId) event.anonymousId = anonymousId;
  if (eventTraits) event.traits = eventTraits;
  if (context) event.context = context;
  return { ok: true, event, format: 'segment' };
}

function idString(v: unknown): string | null {
  if (typeof v === 'string' && v !== '') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return null;
}

function optionalObject(v: unknown, name: string): Record<string, unknown> | undefined | string {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) return `${name} must be an object`;
  return v as Record<string, unknown>;
}
