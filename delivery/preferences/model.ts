// Consent and preferences: per user, per category (transactional, marketing, custom) x
// channel, plus a global unsubscribe. Marketing needs an explicit opt-in record (time and
// source); transactional bypasses opt-in and preferences, but never suppression. Within a
// category, per message type (platform/message-types.ts) x channel: the user's switches.
import type { Channel } from '../../platform/contracts.ts';
import { CHANNELS } from '../../platform/contracts.ts';
import { ErrorCodes, type ErrorCode } from '../../platform/errors.ts';
import type { MessageType, MessageTypes } from '../../platform/message-types.ts';

export const TRANSACTIONAL = 'transactional';
export const MARKETING = 'marketing';

export interface ConsentRecord {
  granted: boolean;
  /** When the user gave or withdrew it (epoch ms). */
  at: number;
  /** Where: `signup_form`, `preference_page`, `one_click_unsubscribe`, `admin_api`, ... */
  source: string;
}

export interface UserPreferences {
  userId: string;
  unsubscribedAll: { at: number; source: string } | null;
  /** category -> channel -> the latest consent record. */
  consents: Record<string, Partial<Record<Channel, ConsentRecord>>>;
  /** message type -> channel -> the user's latest choice (`granted`: they want it there). */
  types: Record<string, Partial<Record<Channel, ConsentRecord>>>;
}

export interface Suppression {
  reason:
    'hard_bounce' | 'complaint' | 'invalid_address' | 'invalid_token' | 'user_deleted' | 'manual';
  at: number;
  /** The address or token that failed: a new address of the same user is not suppressed. */
  address?: string;
}

/** Who made a change through the staff API: the credential's id (never a secret) and role. */
export interface ChangedBy {
  actor: string;
  role: string | null;
}

/** How a change reached the product: the door (`admin_api`, `preference_page`, ...), when, and who for the staff API. */
export interface ChangeMeta {
  source: string;
  at: number;
  by?: ChangedBy;
}

/** One entry of a user's preference history (newest first, bounded). */
export type PreferenceChange = (
  | ({ kind: 'consent'; category: string; channel: Channel } & ConsentRecord)
  | ({ kind: 'message_type'; messageType: string; channel: Channel } & ConsentRecord)
  | { kind: 'unsubscribe_all' | 'resubscribe_all'; at: number; source: string }
) & {
  /** The door the change came through (absent in entries recorded before it was kept). */
  via?: string;
  /** When the product recorded it (a consent's `at` may be dated back by the backend). */
  recordedAt?: number;
  /** The staff credential that made it, for changes through the staff API. */
  by?: ChangedBy;
};

/** A history entry for a change described by `meta`. */
export function historyEntry(
  change:
    | ({ kind: 'consent'; category: string; channel: Channel } & ConsentRecord)
    | ({ kind: 'message_type'; messageType: string; channel: Channel } & ConsentRecord)
    | { kind: 'unsubscribe_all' | 'resubscribe_all' },
  meta: ChangeMeta,
): PreferenceChange {
  const what =
    change.kind === 'consent' || change.kind === 'message_type'
      ? change
      : { kind: change.kind, at: meta.at, source: meta.source };
  return {
    ...what,
    via: meta.source,
    recordedAt: meta.at,
    ...(meta.by ? { by: { actor: meta.by.actor, role: meta.by.role } } : {}),
  };
}

export interface SuppressionState {
  deleted: Suppression | null;
  channels: Partial<Record<Channel, Suppression>>;
}

export type Decision = { allowed: true } | { allowed: false; reason: string };

export function emptyPreferences(userId: string): UserPreferences {
  return { userId, unsubscribedAll: null, consents: {}, types: {} };
}

/** Why a send of a message type is suppressed: the user (or the type's default) has it off there. */
export const MESSAGE_TYPE_OFF = 'message_type_off';
/** Why a send of an opt-in type is suppressed: the user never opted in to it there. */
export const MESSAGE_TYPE_NO_OPT_IN = 'message_type_no_opt_in';

/**
 * Whether the user gets messages of `type` on `channel`, as far as their switches go (the
 * category's consent is decided apart, first). A type users cannot switch off always passes;
 * unknown types (absent) are decided by their category alone.
 */
export function decideMessageType(
  prefs: UserPreferences,
  type: MessageType | undefined,
  channel: Channel,
): Decision {
  if (!type || !type.switchable) return { allowed: true };
  const record = prefs.types[type.id]?.[channel];
  if (record)
    return record.granted
      ? { allowed: true }
      : { allowed: false, reason: `${MESSAGE_TYPE_OFF}:${type.id}:${channel}` };
  if (type.optIn)
    return { allowed: false, reason: `${MESSAGE_TYPE_NO_OPT_IN}:${type.id}:${channel}` };
  return type.channels[channel] === true
    ? { allowed: true }
    : { allowed: false, reason: `${MESSAGE_TYPE_OFF}:${type.id}:${channel}` };
}

/** Whether the user gets `type` on `channel` when the category consent holds: what the preference page ticks. */
export function typeIsOn(prefs: UserPreferences, type: MessageType, channel: Channel): boolean {
  return decideMessageType(prefs, type, channel).allowed;
}

/** Consent and preferences for one category on one channel. */
export function decideConsent(
  prefs: UserPreferences,
  category: string,
  channel: Channel,
  optInCategories: readonly string[] = [MARKETING],
): Decision {
  if (category === TRANSACTIONAL) return { allowed: true };
  if (prefs.unsubscribedAll) return { allowed: false, reason: 'unsubscribed_all' };
  const record = prefs.consents[category]?.[channel];
  if (record && !record.granted)
    return { allowed: false, reason: `opted_out:${category}:${channel}` };
  if (optInCategories.includes(category) && !record)
    return { allowed: false, reason: `no_opt_in:${category}:${channel}` };
  return { allowed: true };
}

/** Suppression applies to every category, transactional included. */
export function decideSuppression(
  state: SuppressionState,
  channel: Channel,
  address: string | undefined,
): Decision {
  if (state.deleted) return { allowed: false, reason: 'user_deleted' };
  const s = state.channels[channel];
  if (
    s &&
    (s.address === undefined ||
      address === undefined ||
      s.address.toLowerCase() === address.toLowerCase())
  ) {
    return { allowed: false, reason: s.reason };
  }
  return { allowed: true };
}

/** A change to a user's preferences, as the product's API and the preference page send it. */
export interface PreferencesPatch {
  unsubscribedAll?: boolean;
  consents?: Record<
    string,
    Partial<Record<Channel, boolean | { granted: boolean; at?: number | string; source?: string }>>
  >;
  /** message type -> channel -> on/off (with the time and source of an opt-in). */
  types?: Record<
    string,
    Partial<Record<Channel, boolean | { granted: boolean; at?: number | string; source?: string }>>
  >;
}

export class PreferencesError extends Error {
  constructor(
    message: string,
    readonly code: ErrorCode = ErrorCodes.BadRequest,
  ) {
    super(message);
    this.name = 'PreferencesError';
  }
}

/** A user's switch of one message type on one channel. */
export interface TypeRecord {
  messageType: string;
  channel: Channel;
  record: ConsentRecord;
}

/**
 * Validates the `types` of a patch against the declared types and turns them into records:
 * only declared, switchable types, on the channels they are sent on. An opt-in through the
 * product's API must say where it came from, as a marketing opt-in must.
 */
export function normaliseTypes(
  types: PreferencesPatch['types'],
  catalogue: MessageTypes,
  now: number,
  defaultSource: string,
  requireOptInSource = false,
): TypeRecord[] {
  const records: TypeRecord[] = [];
  const known = catalogue.list.filter((t) => t.switchable).map((t) => t.id);
  for (const [id, byChannel] of Object.entries(types ?? {})) {
    const type = catalogue.get(id);
    if (!type)
      throw new PreferencesError(
        `types.${id}: unknown message type "${id}"; the types a user can choose are ${known.join(', ') || '(none declared)'}`,
        ErrorCodes.UnknownMessageType,
      );
    if (!type.switchable)
      throw new PreferencesError(
        `types.${id}: "${id}" (${type.label}) cannot be switched: users always get it`,
        ErrorCodes.UnknownMessageType,
      );
    for (const [channel, value] of Object.entries(byChannel ?? {})) {
      if (value === undefined) continue;
      if (type.channels[channel as Channel] === undefined)
        throw new PreferencesError(
          `types.${id}.${channel}: "${id}" is not sent on ${channel} (its channels: ${Object.keys(type.channels).join(', ')})`,
          ErrorCodes.UnknownMessageType,
        );
      const v = typeof value === 'boolean' ? { granted: value } : value;
      if (typeof v.granted !== 'boolean')
        throw new PreferencesError(`types.${id}.${channel}.granted must be a boolean`);
      const at = v.at === undefined ? now : typeof v.at === 'number' ? v.at : Date.parse(v.at);
      if (!Number.isFinite(at))
        throw new PreferencesError(`types.${id}.${channel}.at must be epoch ms or an ISO date`);
      if (at > now + 60_000)
        throw new PreferencesError(`types.${id}.${channel}.at is in the future`);
      const source =
        v.source ?? (requireOptInSource && v.granted && type.optIn ? '' : defaultSource);
      if (!source)
        throw new PreferencesError(
          `types.${id}.${channel}.source is required to opt in to "${id}" (where and how the user agreed, e.g. "signup_form")`,
        );
      records.push({
        messageType: id,
        channel: channel as Channel,
        record: { granted: v.granted, at, source: source.slice(0, 200) },
      });
    }
  }
  return records;
}

const CATEGORY = /^[a-z][a-z0-9_-]{0,63}$/;

/** Validates a patch and turns it into consent records; throws PreferencesError with a message a caller can act on. */
export function normalisePatch(
  patch: PreferencesPatch,
  now: number,
  defaultSource: string,
  /** The product's API must say where a marketing opt-in came from; the preference page is its own source. */
  requireOptInSource = false,
): {
  unsubscribedAll?: boolean;
  records: { category: string; channel: Channel; record: ConsentRecord }[];
} {
  const records: { category: string; channel: Channel; record: ConsentRecord }[] = [];
  for (const [category, byChannel] of Object.entries(patch.consents ?? {})) {
    if (!CATEGORY.test(category))
      throw new PreferencesError(`category "${category}" must match ${CATEGORY.source}`);
    if (category === TRANSACTIONAL)
      throw new PreferencesError('transactional messages are not subject to preferences');
    for (const [channel, value] of Object.entries(byChannel ?? {})) {
      if (!(CHANNELS as readonly string[]).includes(channel))
        throw new PreferencesError(`unknown channel "${channel}" (one of ${CHANNELS.join(', ')})`);
      if (value === undefined) continue;
      const v = typeof value === 'boolean' ? { granted: value } : value;
      if (typeof v.granted !== 'boolean')
        throw new PreferencesError(`consents.${category}.${channel}.granted must be a boolean`);
      const at = v.at === undefined ? now : typeof v.at === 'number' ? v.at : Date.parse(v.at);
      if (!Number.isFinite(at))
        throw new PreferencesError(
          `consents.${category}.${channel}.at must be epoch ms or an ISO date`,
        );
      if (at > now + 60_000)
        throw new PreferencesError(`consents.${category}.${channel}.at is in the future`);
      const source =
        v.source ??
        (requireOptInSource && v.granted && category === MARKETING ? '' : defaultSource);
      if (!source)
        throw new PreferencesError(
          `consents.${category}.${channel}.source is required for a marketing opt-in (where and how the user agreed)`,
        );
      records.push({
        category,
        channel: channel as Channel,
        record: { granted: v.granted, at, source: source.slice(0, 200) },
      });
    }
  }
  const out: { unsubscribedAll?: boolean; records: typeof records } = { records };
  if (patch.unsubscribedAll !== undefined) out.unsubscribedAll = patch.unsubscribedAll;
  return out;
}
