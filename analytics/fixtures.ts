// A small crafted dataset whose funnel, uplift and deliverability numbers are worked out
// by hand (see EXPECTED), shared by the query tests on both engines and the sink test.
import type { DeliveryOutcome, DeliveryStatus, NormalisedEvent, SendCommand } from '../platform/contracts.ts';

export const T0 = Date.UTC(2025, 2, 10, 9, 0, 0);
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
export const GOAL_WITHIN_MS = 7 * DAY;

function send(ruleId: string, userId: string, i: number, holdout: boolean, goal: boolean): SendCommand {
  const s: SendCommand = {
    sendId: `${ruleId}:${userId}:trigger-${i}`,
    ruleId,
    userId,
    category: 'marketing',
    priority: 50,
    template: 'activation_tip',
    channels: ['email'],
    variant: holdout ? null : 'a',
    holdout,
    triggeredBy: { eventId: `ev-signup-${userId}`, eventType: 'user_registered' },
    createdAt: T0 + i * HOUR,
    expiresAt: null,
    data: { user: { plan: 'trial' } },
  };
  if (goal) s.goal = { event: 'subscription_started', withinMs: GOAL_WITHIN_MS };
  return s;
}

const r1 = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'].map((u, i) => send('r1', u, i, false, true));
const h1 = ['h1', 'h2', 'h3', 'h4'].map((u, i) => send('r1', u, 10 + i, true, true));
const r2 = [send('r2', 'u7', 20, false, false)];
export const SENDS: SendCommand[] = [...r1, ...h1, ...r2];

const sendOf = (userId: string, ruleId = 'r1') => {
  const s = SENDS.find((x) => x.userId === userId && x.ruleId === ruleId);
  if (!s) throw new Error(`no send for ${userId}`);
  return s;
};

function outcome(userId: string, status: DeliveryStatus, afterMs: number, provider: string | null, ruleId = 'r1', attempt = 1): DeliveryOutcome {
  const s = sendOf(userId, ruleId);
  return {
    id: `${s.sendId}:email:${status}${provider ? `:${provider}` : ''}`,
    sendId: s.sendId,
    ruleId,
    userId,
    channel: 'email',
    status,
    reason: status === 'failed' || status === 'bounced' ? '550 mailbox unavailable' : null,
    provider,
    attempt,
    ts: s.createdAt + afterMs,
    variant: s.variant,
    holdout: s.holdout,
  };
}

export const DELIVERIES: DeliveryOutcome[] = [
  outcome('u1', 'sent', 1000, 'smtp-a'),
  outcome('u1', 'opened', HOUR, null),
  outcome('u1', 'clicked', 2 * HOUR, null),
  outcome('u2', 'sent', 1000, 'smtp-a'),
  outcome('u2', 'opened', HOUR, null),
  outcome('u3', 'sent', 1000, 'smtp-a'),
  outcome('u3', 'bounced', 60_000, null),
  outcome('u4', 'failed', 1000, 'smtp-a'),
  outcome('u4', 'sent', 2000, 'smtp-b', 'r1', 2),
  outcome('u4', 'delivered', 60_000, null),
  outcome('u5', 'suppressed', 500, null),
  outcome('u6', 'sent', 1000, 'smtp-b'),
  outcome('u6', 'clicked', HOUR, null),
  outcome('u6', 'complained', 2 * HOUR, null),
  outcome('h1', 'holdout', 10, null),
  outcome('h2', 'holdout', 10, null),
  outcome('h3', 'holdout', 10, null),
  outcome('h4', 'holdout', 10, null),
  outcome('u7', 'sent', 1000, 'smtp-a', 'r2'),
  outcome('u7', 'opened', HOUR, null, 'r2'),
];

function event(userId: string, type: string, ts: number, n = 0): NormalisedEvent {
  return { id: `ev-${type}-${userId}-${n}`, userId, type, ts, receivedAt: ts + 50, source: 'http:web', properties: { plan: 'pro', amount: 19 } };
}

export const EVENTS: NormalisedEvent[] = [
  ...SENDS.map((s) => event(s.userId, 'user_registered', s.createdAt - DAY)),
  event('u1', 'subscription_started', sendOf('u1').createdAt + DAY),
  // u2 converts after the 7-day goal window: not a conversion.
  event('u2', 'subscription_started', sendOf('u2').createdAt + 8 * DAY),
  event('u4', 'subscription_started', sendOf('u4').createdAt + 2 * DAY),
  // u5 converted before the send: not caused by it.
  event('u5', 'subscription_started', sendOf('u5').createdAt - HOUR),
  event('u6', 'subscription_started', sendOf('u6').createdAt + 3 * DAY, 1),
  event('u6', 'subscription_started', sendOf('u6').createdAt + 4 * DAY, 2),
  event('h1', 'subscription_started', sendOf('h1').createdAt + DAY),
  event('u7', 'subscription_started', sendOf('u7', 'r2').createdAt + DAY),
  event('u1', 'Feature Used', T0 + 5 * HOUR),
];

export const WINDOW = { from: T0 - 30 * DAY, to: T0 + 30 * DAY };

export const EXPECTED = {
  funnel: [
    { ruleId: 'r1', sends: 6, sent: 5, delivered: 4, opened: 3, clicked: 2, converted: 3 },
    { ruleId: 'r2', sends: 1, sent: 1, delivered: 1, opened: 1, clicked: 0, converted: 0 },
  ],
  uplift: { ruleId: 'r1', treated: { n: 6, x: 3 }, holdout: { n: 4, x: 1 } },
  deliverability: [
    { provider: 'smtp-a', channel: 'email', attempted: 5, sent: 4, failed: 1, bounced: 1, complained: 0 },
    { provider: 'smtp-b', channel: 'email', attempted: 2, sent: 2, failed: 0, bounced: 0, complained: 1 },
  ],
};
