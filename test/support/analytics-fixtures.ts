// A small crafted dataset whose funnel, uplift and deliverability numbers are worked out
// by hand (see EXPECTED), shared by the query tests on both engines and the sink test.
import type {
  DeliveryOutcome,
  DeliveryStatus,
  MessageRecord,
  NormalisedEvent,
  SendCommand,
} from '../../platform/contracts.ts';

export const T0 = Date.UTC(2025, 2, 10, 9, 0, 0);
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
export const GOAL_WITHIN_MS = 7 * DAY;

function send(
  ruleId: string,
  userId: string,
  i: number,
  holdout: boolean,
  goal: boolean,
): SendCommand {
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

function outcome(
  userId: string,
  status: DeliveryStatus,
  afterMs: number,
  provider: string | null,
  ruleId = 'r1',
  attempt = 1,
): DeliveryOutcome {
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

/** The message log's record of every send a provider accepted (its `sent` outcome). */
export const MESSAGES: MessageRecord[] = DELIVERIES.filter((d) => d.status === 'sent').map((d) => {
  const s = sendOf(d.userId, d.ruleId);
  return {
    id: `${s.sendId}:email`,
    sendId: s.sendId,
    userId: s.userId,
    ruleId: s.ruleId,
    campaignId: null,
    category: s.category,
    channel: 'email',
    template: s.template,
    templateVersion: null,
    locale: 'en',
    to: `${s.userId}@example.com`,
    subject: 'A tip for your trial',
    html: `<p>Hello ${s.userId}</p>`,
    text: `Hello ${s.userId}`,
    content: {},
    data: s.data,
    origin: null,
    ts: d.ts,
  };
});

function event(userId: string, type: string, ts: number, n = 0): NormalisedEvent {
  return {
    id: `ev-${type}-${userId}-${n}`,
    userId,
    type,
    ts,
    receivedAt: ts + 50,
    source: 'http:web',
    properties: { plan: 'pro', amount: 19 },
  };
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
    {
      provider: 'smtp-a',
      channel: 'email',
      attempted: 5,
      sent: 4,
      failed: 1,
      bounced: 1,
      complained: 0,
    },
    {
      provider: 'smtp-b',
      channel: 'email',
      attempted: 2,
      sent: 2,
      failed: 0,
      bounced: 0,
      complained: 1,
    },
  ],
};

// ------------------------------------------------------------------ retention and churn
// A second dataset, weeks before the first (users c*, w*; rules winback, nudge), so both can
// share a database. Days count from M, Monday 2025-01-06 00:00 UTC; things happen at 10:00.

export const M = Date.UTC(2025, 0, 6);
const at = (day: number, hour = 10) => M + day * DAY + hour * HOUR;

function activity(
  userId: string,
  type: string,
  day: number,
  source = 'http:web',
  hour = 10,
): NormalisedEvent {
  return {
    id: `ev-${userId}-${type}-${day}-${hour}`,
    userId,
    type,
    ts: at(day, hour),
    receivedAt: at(day, hour) + 50,
    source,
    properties: {},
  };
}

function riskSend(
  ruleId: string,
  userId: string,
  day: number,
  holdout: boolean,
  hour = 10,
): SendCommand {
  return {
    sendId: `${ruleId}:${userId}:day-${day}`,
    ruleId,
    userId,
    category: 'marketing',
    priority: 40,
    template: 'winback',
    channels: ['email'],
    variant: null,
    holdout,
    triggeredBy: { eventId: `seg-${userId}-${day}`, eventType: 'segment.entered' },
    createdAt: at(day, hour),
    expiresAt: null,
    data: {},
  };
}

export const COHORT_EVENTS: NormalisedEvent[] = [
  // Week of 2025-01-06: c1, c2, c3 sign up on days 0, 1, 2.
  activity('c1', 'user_registered', 0),
  activity('c1', 'app_opened', 3),
  activity('c1', 'subscription_cancelled', 5), // before the churn window: not counted
  activity('c1', 'app_opened', 8),
  activity('c1', 'app_opened', 15),
  activity('c2', 'user_registered', 1),
  activity('c2', 'app_opened', 2, 'http:web', 23), // 23:00 UTC is still day 2
  activity('c2', 'app_opened', 9),
  activity('c3', 'user_registered', 2),
  activity('c3', 'message_opened', 10, 'tracker'), // our tracker, not the user using the product
  activity('c3', 'segment.entered', 10, 'engine'),
  activity('c3', 'subscription_cancelled', 20, 'cdc:billing'),
  // Week of 2025-01-13: c4, c5.
  activity('c4', 'user_registered', 8),
  activity('c4', 'app_opened', 16),
  activity('c4', 'user_registered', 20), // a second signup: the first one counts
  activity('c4', 'app_opened', 30),
  activity('c4', 'subscription_cancelled', 36), // after the churn window
  activity('c5', 'user_registered', 9),
  activity('c5', 'order_placed', 9, 'cdc:shop'),
  activity('c5', 'subscription_cancelled', 22),
  // Signed up before the window.
  activity('c6', 'user_registered', -7),
  activity('c6', 'app_opened', 2),
  // Only our own messages' events: not a user of the product.
  activity('c7', 'message_clicked', 3, 'tracker'),
  // Churn-risk users of the re-engagement rules.
  activity('w1', 'app_opened', -20),
  activity('w1', 'app_opened', 4),
  activity('w2', 'app_opened', -10),
  activity('w2', 'app_opened', 14),
  activity('w3', 'app_opened', -5),
  activity('w3', 'app_opened', 2),
  activity('w4', 'app_opened', -30),
  activity('w4', 'app_opened', 15),
  activity('w5', 'app_opened', -15),
  activity('w5', 'app_opened', 5),
  activity('w6', 'message_opened', 4, 'tracker'),
  activity('w7', 'app_opened', 0),
  activity('w8', 'app_opened', -20),
  activity('w8', 'app_opened', 4),
];

export const COHORT_SENDS: SendCommand[] = [
  riskSend('winback', 'w1', 1, false), // inactive 21 days; back on day 4
  riskSend('winback', 'w1', 20, false), // after the window
  riskSend('winback', 'w2', 6, false), // inactive 16 days; back on day 14, 8 days later: too late
  riskSend('winback', 'w3', 1, false), // active 6 days before: not at risk
  riskSend('winback', 'w4', 0, false), // at risk, nothing within 7 days
  riskSend('winback', 'w4', 13, false), // still at risk; back on day 15
  riskSend('winback', 'w5', 3, true), // holdout, inactive 18 days, back on day 5
  riskSend('winback', 'w6', 3, true), // holdout, never active, never back (a tracker event is not activity)
  riskSend('winback', 'w7', 0, true), // holdout, active at the very moment of the send: not at risk
  riskSend('nudge', 'w8', 3, false), // a rule without holdout
];

export const RETENTION_WINDOW = { from: M, to: M + 14 * DAY };
export const CHURN_WINDOW = { from: M + 14 * DAY, to: M + 35 * DAY };

export const COHORT_EXPECTED = {
  weekly: [
    { cohort: '2025-01-06', cohortUsers: 3, period: 0, activeUsers: 3, share: 1 },
    { cohort: '2025-01-06', cohortUsers: 3, period: 1, activeUsers: 2, share: 2 / 3 },
    // c1 on day 15, c3 cancelling through the billing database on day 20 (activity too).
    { cohort: '2025-01-06', cohortUsers: 3, period: 2, activeUsers: 2, share: 2 / 3 },
    { cohort: '2025-01-13', cohortUsers: 2, period: 0, activeUsers: 2, share: 1 },
    // c4 on days 16 and 20 (signing up again is activity); c5 cancelling on day 22; c4's day 30 is period 3.
    { cohort: '2025-01-13', cohortUsers: 2, period: 1, activeUsers: 1, share: 1 / 2 },
    { cohort: '2025-01-13', cohortUsers: 2, period: 2, activeUsers: 1, share: 1 / 2 },
  ],
  daily: [
    { cohort: '2025-01-06', cohortUsers: 1, period: 0, activeUsers: 1, share: 1 },
    { cohort: '2025-01-07', cohortUsers: 1, period: 0, activeUsers: 1, share: 1 },
    { cohort: '2025-01-07', cohortUsers: 1, period: 1, activeUsers: 1, share: 1 },
    { cohort: '2025-01-08', cohortUsers: 1, period: 0, activeUsers: 1, share: 1 },
    { cohort: '2025-01-14', cohortUsers: 1, period: 0, activeUsers: 1, share: 1 },
    { cohort: '2025-01-15', cohortUsers: 1, period: 0, activeUsers: 1, share: 1 },
  ],
  // As of day 35, inactive 14 days = last activity before day 21. Active: c4 (day 30), c5 (day 22).
  churn: { users: 13, inactive: 11, active: 2, inactiveShare: 11 / 13, cancelled: 2 },
  // inactiveDays 14, returnWithinDays 7: winback treated w1 (back), w2, w4 (back); holdout w5 (back), w6.
  reengagement: [
    {
      ruleId: 'winback',
      treated: { n: 3, x: 2 },
      holdout: { n: 2, x: 1 },
      saved: (2 / 3 - 1 / 2) * 3,
    },
    { ruleId: 'nudge', treated: { n: 1, x: 1 }, holdout: { n: 0, x: 0 }, saved: null },
  ],
};
