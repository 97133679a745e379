// Double opt-in: a marketing opt-in is a request until the person confirms it through the
// link of a confirmation email. A request is pending until it is confirmed, withdrawn (the
// person opted out meanwhile) or past its expiry; what proves the consent (when, from which
// IP and user agent, through which email) is kept on the request the consent came from.
import type { Channel, SendCommand } from '../../platform/contracts.ts';
import { deterministicId } from '../../platform/ids.ts';

/** The send of the first confirmation email and of its one reminder (rule ids of sends no rule file can take: they start with "@"). */
export const CONFIRMATION_RULE = '@double-opt-in';
export const REMINDER_RULE = '@double-opt-in-reminder';
export const CONFIRMATION_TEMPLATE = 'confirm_subscription';
/** The source of a consent granted by a confirmed request. */
export const DOUBLE_OPT_IN_SOURCE = 'double_opt_in';
/** The `identify` trait that asks for marketing email. */
export const OPT_IN_TRAIT = 'marketing_opt_in';

/** Channels confirmed by a link in an email to the address itself. */
export const CONFIRMED_CHANNELS: readonly Channel[] = ['email'];

export type OptInStatus = 'pending' | 'confirmed' | 'withdrawn' | 'expired';

/** Who confirmed: personal data, kept with the request, exported to the person, erased with them, never logged. */
export interface ConfirmationEvidence {
  at: number;
  ip: string;
  userAgent: string;
}

export interface OptInRequest {
  id: string;
  userId: string;
  category: string;
  channel: Channel;
  /** Where the person asked: `signup_form`, `preference_page`, `identify`, ... */
  source: string;
  /** The door it came through: `admin_api`, `preference_page`, `identify`. */
  via: string;
  requestedAt: number;
  /** When the reminder goes out; null: no reminder. */
  remindAt: number | null;
  expiresAt: number;
  /** The sendIds of the confirmation email and of its reminder. */
  sendIds: { confirmation: string; reminder: string | null };
  /** `pending`, `confirmed` or `withdrawn` as stored; `expired` is a pending request past `expiresAt`. */
  status: Exclude<OptInStatus, 'expired'>;
  confirmed?: ConfirmationEvidence;
  withdrawnAt?: number;
}

export interface OptInTimes {
  linkTtlMs: number;
  /** 0: no reminder. */
  reminderAfterMs: number;
  expiresAfterMs: number;
}

const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/** Milliseconds of a configured duration (`7d`); the config schema has checked its form. */
export function durationMs(text: string): number {
  const m = /^([0-9]+)(s|m|h|d|w)$/.exec(text);
  if (!m) throw new Error(`invalid duration ${JSON.stringify(text)}: use e.g. "90s", "12h", "7d"`);
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

export function optInTimes(d: {
  optInLinkTtl: string;
  optInReminderAfter: string;
  optInExpiresAfter: string;
}): OptInTimes {
  return {
    linkTtlMs: durationMs(d.optInLinkTtl),
    reminderAfterMs: durationMs(d.optInReminderAfter),
    expiresAfterMs: durationMs(d.optInExpiresAfter),
  };
}

/** The status a request has at `now`. */
export function statusAt(r: OptInRequest, now: number): OptInStatus {
  return r.status === 'pending' && now >= r.expiresAt ? 'expired' : r.status;
}

export const requestIdFor = (userId: string, category: string, channel: string, trigger: string) =>
  deterministicId('optin', userId, category, channel, trigger);

/**
 * A new request. Its id, and so the sendIds of its emails, follow from what started it
 * (`trigger`: an event id, or the time of an API call), so a replayed start sends nothing new.
 */
export function newRequest(
  input: { userId: string; category: string; channel: Channel; source: string; via: string },
  trigger: string,
  at: number,
  times: OptInTimes,
): OptInRequest {
  const id = requestIdFor(input.userId, input.category, input.channel, trigger);
  const expiresAt = at + times.expiresAfterMs;
  const remindAt =
    times.reminderAfterMs > 0 && at + times.reminderAfterMs < expiresAt
      ? at + times.reminderAfterMs
      : null;
  return {
    id,
    ...input,
    requestedAt: at,
    remindAt,
    expiresAt,
    sendIds: {
      confirmation: deterministicId('send', CONFIRMATION_RULE, input.userId, id),
      reminder: remindAt === null ? null : deterministicId('send', REMINDER_RULE, input.userId, id),
    },
    status: 'pending',
  };
}

/** The link's expiry: its own lifetime, and never past the request's. */
export const linkExpiry = (r: OptInRequest, times: OptInTimes) =>
  Math.min(r.requestedAt + times.linkTtlMs, r.expiresAt);

/** What the confirmation emails carry in `data.optIn` (the templates read it too). */
export interface OptInSendData {
  requestId: string;
  category: string;
  channel: string;
  confirmUrl: string;
  reminder: boolean;
  /** The reminder waits (in the delay queue) until then. */
  notBefore: number;
  /** When the link stops working (the email says so). */
  expiresAt: number;
}

/**
 * The confirmation email, or its reminder: transactional (the person asked for it, and has no
 * marketing consent yet), on the channel being confirmed, to the address in `user`.
 */
export function confirmationSend(
  r: OptInRequest,
  kind: 'confirmation' | 'reminder',
  user: Record<string, unknown>,
  link: { url: string; expiresAt: number },
): SendCommand {
  const reminder = kind === 'reminder';
  const optIn: OptInSendData = {
    requestId: r.id,
    category: r.category,
    channel: r.channel,
    confirmUrl: link.url,
    reminder,
    notBefore: reminder ? r.remindAt! : r.requestedAt,
    expiresAt: link.expiresAt,
  };
  return {
    sendId: reminder ? r.sendIds.reminder! : r.sendIds.confirmation,
    ruleId: reminder ? REMINDER_RULE : CONFIRMATION_RULE,
    userId: r.userId,
    category: 'transactional',
    priority: 100,
    template: CONFIRMATION_TEMPLATE,
    channels: [r.channel],
    variant: null,
    holdout: false,
    triggeredBy: { eventId: r.id, eventType: 'consent.requested' },
    createdAt: r.requestedAt,
    expiresAt: r.expiresAt,
    data: { user, optIn: { ...optIn } },
    origin: DOUBLE_OPT_IN_SOURCE,
  };
}

/** `data.optIn` of a send command, or null when it is not a confirmation email. */
export function optInData(send: SendCommand): OptInSendData | null {
  if (send.ruleId !== CONFIRMATION_RULE && send.ruleId !== REMINDER_RULE) return null;
  const d = (send.data as Record<string, unknown>).optIn as Partial<OptInSendData> | undefined;
  return d && typeof d.requestId === 'string' && typeof d.notBefore === 'number'
    ? (d as OptInSendData)
    : null;
}
