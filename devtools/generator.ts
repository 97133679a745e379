// Synthetic users of a B2C subscription product, for the demo and for filling a test stack:
// people sign up at a steady rate, use the app, hear that their trial ends, subscribe or
// leave, pay, sometimes fail to pay and recover or cancel. Each user is a small state
// machine over compressed time (`dayMs` real milliseconds per simulated day) driven by a
// PRNG seeded from (seed, user), so a seed always makes the same users, events and
// messageIds however often the simulation is advanced. Users leave the simulation when
// their journey ends, so memory stays bounded by rate x journey length.
//
// The generator knows the product only through two functions it is handed: "post a Segment
// batch" (the ingest API's /v1/batch) and "opt this user in to marketing" (the preference
// API). It sends what an app and its backend send: identify, signups, feature use and
// billing events. Opens, clicks, unsubscribes and in-app reads are the product's own
// reserved events, made by its tracker when a real person opens a message; the generator
// does not forge them, so the funnel's opened and clicked steps stay at zero.
import { errorMessage, isRetriable } from '../platform/errors.ts';
import type { Logger } from '../platform/logger.ts';

/** A Segment message as `/v1/batch` takes it. */
export type SegmentMessage =
  | {
      type: 'identify';
      userId: string;
      messageId: string;
      timestamp: string;
      traits: Record<string, unknown>;
    }
  | {
      type: 'track';
      userId: string;
      messageId: string;
      timestamp: string;
      event: string;
      properties: Record<string, unknown>;
    };

/** A message of the simulation, due at `at` (simulated ms since the generator started). */
export interface TimedMessage {
  at: number;
  /** The user's index (signup order). */
  user: number;
  /** The user's message counter: part of the messageId. */
  step: number;
  message: DistributiveOmit<SegmentMessage, 'timestamp'>;
}
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** What users do, in simulated days and probabilities (one draw per user and occasion). */
export const JOURNEY = {
  trialDays: 14,
  /** Billing sends `trial_ends_soon` this many days before the trial ends. */
  trialEndsSoonDaysBefore: 3,
  /** Share of users who tick the marketing box at signup (email and in-app). */
  optInShare: 0.6,
  /** Chance that a trial converts: base + perEngagement x the user's engagement (0..1). */
  conversion: { base: 0.15, perEngagement: 0.45 },
  /** Of the converters, those who subscribe before billing's reminder. */
  earlyConversionShare: 0.3,
  billingDays: 30,
  /** Renewals a subscriber is followed for; then the journey ends (still a customer). */
  renewals: 3,
  /** Chance that a renewal charge fails. */
  paymentFailure: 0.2,
  /** Chance that a failed charge succeeds on the retry, `retryDays` later. */
  recovery: 0.6,
  retryDays: 2,
  /** Chance that a subscriber cancels at a renewal instead of paying. */
  voluntaryCancel: 0.08,
} as const;

/** The longest journey, in simulated days (signup to the last renewal's retry). */
export const MAX_JOURNEY_DAYS =
  JOURNEY.trialDays + JOURNEY.renewals * JOURNEY.billingDays + JOURNEY.retryDays + 1;

const PLANS = [
  { plan: 'basic', amount: 9, weight: 0.5 },
  { plan: 'pro', amount: 19, weight: 0.35 },
  { plan: 'family', amount: 29, weight: 0.15 },
] as const;

const FEATURES = ['import', 'invite', 'report', 'share', 'template'] as const;
const CANCEL_REASONS = ['too_expensive', 'missing_feature', 'switched_service', 'not_using'];

interface People {
  locale: string;
  weight: number;
  /** Time zones with the currency people there pay in. */
  zones: readonly (readonly [string, string])[];
  first: readonly string[];
  last: readonly string[];
}

/** Locales with their share of signups, names and time zones (with the zone's currency). */
const PEOPLE: readonly People[] = [
  {
    locale: 'en',
    weight: 0.45,
    zones: [
      ['Europe/London', 'GBP'],
      ['America/New_York', 'USD'],
      ['America/Chicago', 'USD'],
      ['Australia/Sydney', 'AUD'],
    ],
    first: ['Ada', 'Ben', 'Chloe', 'Dan', 'Ella', 'Finn', 'Grace', 'Harry', 'Isla', 'Jack'],
    last: ['Smith', 'Jones', 'Taylor', 'Brown', 'Wilson', 'Evans', 'Walker', 'Hughes'],
  },
  {
    locale: 'de',
    weight: 0.25,
    zones: [
      ['Europe/Berlin', 'EUR'],
      ['Europe/Vienna', 'EUR'],
      ['Europe/Zurich', 'CHF'],
    ],
    first: ['Lena', 'Jonas', 'Mia', 'Lukas', 'Hannah', 'Felix', 'Sophie', 'Jörg'],
    last: ['Müller', 'Schmidt', 'Schneider', 'Fischer', 'Weber', 'Wagner', 'Becker'],
  },
  {
    locale: 'fr',
    weight: 0.15,
    zones: [
      ['Europe/Paris', 'EUR'],
      ['America/Toronto', 'CAD'],
    ],
    first: ['Camille', 'Hugo', 'Léa', 'Louis', 'Manon', 'Théo', 'Chloé', 'Jules'],
    last: ['Martin', 'Bernard', 'Dubois', 'Thomas', 'Robert', 'Richard', 'Petit'],
  },
  {
    locale: 'pt-BR',
    weight: 0.15,
    zones: [
      ['America/Sao_Paulo', 'BRL'],
      ['America/Recife', 'BRL'],
    ],
    first: ['Ana', 'João', 'Maria', 'Pedro', 'Beatriz', 'Lucas', 'Júlia', 'Gabriel'],
    last: ['Silva', 'Santos', 'Oliveira', 'Souza', 'Lima', 'Pereira', 'Costa'],
  },
];

/** Addresses only at the domains reserved for examples (RFC 2606): never a real mailbox. */
export const EMAIL_DOMAINS = ['example.com', 'example.org'] as const;

/** A PRNG (mulberry32): 32-bit state, uniform in [0, 1). */
function prng(state: number): () => number {
  let a = state >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One user's PRNG state from (seed, index): a user's draws never depend on other users. */
function userState(seed: number, index: number): number {
  let h = Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  return h >>> 0;
}

function pick<T>(rnd: () => number, items: readonly T[]): T {
  return items[Math.floor(rnd() * items.length)]!;
}

function weighted<T extends { weight: number }>(rnd: () => number, items: readonly T[]): T {
  let r = rnd();
  for (const item of items) {
    if (r < item.weight) return item;
    r -= item.weight;
  }
  return items[items.length - 1]!;
}

const ascii = (s: string) =>
  s
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]/g, '');

export interface SyntheticProfile {
  userId: string;
  email: string;
  firstName: string;
  lastName: string;
  locale: string;
  timezone: string;
  currency: string;
  /** 0..1: how often the user comes back and how likely they subscribe. */
  engagement: number;
  optIn: boolean;
}

/** The user of index `index` for `seed` (the first draws of the user's PRNG). */
function profileOf(
  seed: number,
  index: number,
  idPrefix: string,
  rnd: () => number,
): SyntheticProfile {
  const people = weighted(rnd, PEOPLE);
  const firstName = pick(rnd, people.first);
  const lastName = pick(rnd, people.last);
  const [timezone, currency] = pick(rnd, people.zones);
  const domain = pick(rnd, EMAIL_DOMAINS);
  return {
    userId: `${idPrefix}-${seed}-${index}`,
    email: `${ascii(firstName)}.${ascii(lastName)}.${seed}.${index}@${domain}`,
    firstName,
    lastName,
    locale: people.locale,
    timezone,
    currency,
    engagement: rnd(),
    optIn: rnd() < JOURNEY.optInShare,
  };
}

/** Who user `index` of `seed` is (the same profile the simulation gives them). */
export function syntheticProfile(
  seed: number,
  index: number,
  idPrefix = 'synth',
): SyntheticProfile {
  return profileOf(seed, index, idPrefix, prng(userState(seed, index)));
}

type Phase = 'trial' | 'paying' | 'past_due' | 'done';

interface SimUser {
  index: number;
  profile: SyntheticProfile;
  rnd: () => number;
  signupAt: number;
  phase: Phase;
  /** The simulated day the next step plays (days since signup). */
  day: number;
  nextAt: number;
  step: number;
  /** Messages made by a step, waiting for their time. */
  queue: TimedMessage[];
  converts: boolean;
  decisionDay: number;
  plan: (typeof PLANS)[number];
  nextRenewalDay: number;
  renewalsLeft: number;
  retryDay: number;
}

export interface PopulationOptions {
  /** New users per second of simulated time. */
  rate: number;
  /** The same seed makes the same users, events and messageIds. */
  seed: number;
  /** Real ms one simulated day lasts (86 400 000: real time). */
  dayMs: number;
  /** Create no more users than this (default: no limit). */
  maxUsers?: number;
  /** userIds and messageIds start with it (default `synth`). */
  idPrefix?: string;
}

export interface PopulationStats {
  /** Users created so far. */
  users: number;
  /** Users still in the simulation (journey not over). */
  active: number;
  /** Messages the simulation has made due. */
  messages: number;
  converted: number;
  /** Trials that ended without subscribing, and subscriptions cancelled. */
  cancelled: number;
  paymentsFailed: number;
}

export interface Population {
  /**
   * Moves the simulation to `simNow` (ms since start, never backwards): the users who
   * signed up meanwhile (those to opt in first) and every message due by then, in time order.
   */
  advance(simNow: number): { optIns: string[]; due: TimedMessage[] };
  stats(): PopulationStats;
  /** The phase of every user still in the simulation (for tests and health). */
  phases(): Record<Phase, number>;
}

export function createPopulation(opts: PopulationOptions): Population {
  if (!(opts.rate > 0) || !Number.isFinite(opts.rate))
    throw new RangeError(`rate must be a positive number of users per second, got ${opts.rate}`);
  if (!Number.isInteger(opts.seed) || opts.seed < 0 || opts.seed > 0xffffffff)
    throw new RangeError(`seed must be an integer from 0 to 4294967295, got ${opts.seed}`);
  if (!(opts.dayMs >= 1) || !Number.isFinite(opts.dayMs))
    throw new RangeError(`dayMs must be at least 1, got ${opts.dayMs}`);
  const { rate, seed, dayMs } = opts;
  const idPrefix = opts.idPrefix ?? 'synth';
  const maxUsers = opts.maxUsers ?? Number.POSITIVE_INFINITY;
  const users = new Map<number, SimUser>();
  let created = 0;
  let simNow = 0;
  const counts = { messages: 0, converted: 0, cancelled: 0, paymentsFailed: 0 };

  const emit = (
    u: SimUser,
    at: number,
    message: DistributiveOmit<SegmentMessage, 'timestamp' | 'userId' | 'messageId'>,
  ) => {
    const step = u.step++;
    u.queue.push({
      at,
      user: u.index,
      step,
      message: { ...message, userId: u.profile.userId, messageId: `${u.profile.userId}-${step}` },
    });
  };
  const track = (u: SimUser, at: number, event: string, properties: Record<string, unknown> = {}) =>
    emit(u, at, { type: 'track', event, properties });
  const identify = (u: SimUser, at: number, traits: Record<string, unknown>) =>
    emit(u, at, { type: 'identify', traits });

  const signUp = (index: number): SimUser => {
    const signupAt = (index * 1000) / rate;
    const rnd = prng(userState(seed, index));
    const profile = profileOf(seed, index, idPrefix, rnd);
    const converts =
      rnd() < JOURNEY.conversion.base + JOURNEY.conversion.perEngagement * profile.engagement;
    const remindDay = JOURNEY.trialDays - JOURNEY.trialEndsSoonDaysBefore;
    const decisionDay = !converts
      ? JOURNEY.trialDays
      : rnd() < JOURNEY.earlyConversionShare
        ? 2 + Math.floor(rnd() * (remindDay - 2))
        : remindDay + 1 + Math.floor(rnd() * JOURNEY.trialEndsSoonDaysBefore);
    const u: SimUser = {
      index,
      profile,
      rnd,
      signupAt,
      phase: 'trial',
      day: 1,
      nextAt: 0,
      step: 0,
      queue: [],
      converts,
      decisionDay,
      plan: weighted(rnd, PLANS),
      nextRenewalDay: 0,
      renewalsLeft: JOURNEY.renewals,
      retryDay: 0,
    };
    // Within a step, messages an hour of simulated time apart: in order, inside the day.
    const hour = dayMs / 24;
    identify(u, signupAt, {
      email: profile.email,
      firstName: profile.firstName,
      lastName: profile.lastName,
      plan: 'trial',
      locale: profile.locale,
      timezone: profile.timezone,
    });
    track(u, signupAt + hour / 60, 'user_registered', {
      method: pick(rnd, ['email', 'google', 'apple']),
    });
    track(u, signupAt + hour / 30, 'app_opened');
    u.nextAt = nextDayAt(u);
    return u;
  };

  /** A random moment in the first half of the user's next simulated day. */
  const nextDayAt = (u: SimUser) => u.signupAt + u.day * dayMs + u.rnd() * 0.5 * dayMs;

  const activity = (u: SimUser, at: number, activeChance: number): number => {
    const hour = dayMs / 24;
    if (u.rnd() >= activeChance) return at;
    track(u, at, 'app_opened');
    let t = at;
    if (u.rnd() < u.profile.engagement) {
      t += hour;
      track(u, t, 'Feature Used', { feature: pick(u.rnd, FEATURES) });
    }
    if (u.rnd() < u.profile.engagement * 0.3) {
      t += hour;
      track(u, t, 'export_done', { format: pick(u.rnd, ['csv', 'pdf', 'xlsx']) });
    }
    return t + hour;
  };

  const cancel = (u: SimUser, at: number, reason: string) => {
    track(u, at, 'subscription_cancelled', {
      reason,
      plan: u.phase === 'trial' ? 'trial' : u.plan.plan,
    });
    identify(u, at + dayMs / 24, { plan: 'cancelled' });
    counts.cancelled++;
    u.phase = 'done';
  };

  const money = (u: SimUser) => ({ amount: u.plan.amount, currency: u.profile.currency });

  /** A renewal paid: the journey ends after the last one followed (the user stays a customer). */
  const renewed = (u: SimUser) => {
    u.renewalsLeft--;
    if (u.renewalsLeft <= 0) u.phase = 'done';
    else u.nextRenewalDay += JOURNEY.billingDays;
  };

  /** One simulated day of a user: activity, then what billing says that day. */
  const playDay = (u: SimUser) => {
    const hour = dayMs / 24;
    const start = u.nextAt;
    const remindDay = JOURNEY.trialDays - JOURNEY.trialEndsSoonDaysBefore;
    if (u.phase === 'trial') {
      let t = activity(u, start, 0.25 + 0.6 * u.profile.engagement);
      // Early converters are subscribers by then: billing reminds only users still on trial.
      if (u.day === remindDay) {
        track(u, t, 'trial_ends_soon', { daysLeft: JOURNEY.trialEndsSoonDaysBefore });
        t += hour;
      }
      if (u.day === u.decisionDay) {
        if (u.converts) {
          // The backend changes the plan first, so rules see a subscriber when the event arrives.
          identify(u, t, { plan: u.plan.plan });
          track(u, t + hour / 4, 'subscription_started', {
            plan: u.plan.plan,
            interval: 'month',
            ...money(u),
          });
          track(u, t + hour / 2, 'payment_succeeded', money(u));
          counts.converted++;
          u.phase = 'paying';
          u.nextRenewalDay = u.day + JOURNEY.billingDays;
        } else cancel(u, t, 'trial_ended');
      }
    } else if (u.phase === 'paying') {
      const t = activity(u, start, 0.2 + 0.6 * u.profile.engagement);
      if (u.day === u.nextRenewalDay) {
        if (u.rnd() < JOURNEY.voluntaryCancel) cancel(u, t, pick(u.rnd, CANCEL_REASONS));
        else if (u.rnd() < JOURNEY.paymentFailure) {
          track(u, t, 'payment_failed', { ...money(u), reason: 'card_declined' });
          counts.paymentsFailed++;
          u.phase = 'past_due';
          u.retryDay = u.day + JOURNEY.retryDays;
        } else {
          track(u, t, 'payment_succeeded', money(u));
          renewed(u);
        }
      }
    } else if (u.phase === 'past_due') {
      const t = activity(u, start, 0.2 + 0.6 * u.profile.engagement);
      if (u.day === u.retryDay) {
        if (u.rnd() < JOURNEY.recovery) {
          track(u, t, 'payment_succeeded', { ...money(u), recovered: true });
          u.phase = 'paying';
          renewed(u);
        } else cancel(u, t, 'payment_failed');
      }
    }
    u.day++;
    u.nextAt = nextDayAt(u);
  };

  return {
    advance(to) {
      if (to < simNow) throw new RangeError(`the simulation cannot go back (${to} < ${simNow})`);
      simNow = to;
      const optIns: string[] = [];
      while (created < maxUsers && (created * 1000) / rate <= simNow) {
        const u = signUp(created++);
        users.set(u.index, u);
        if (u.profile.optIn) optIns.push(u.profile.userId);
      }
      const due: TimedMessage[] = [];
      for (const u of users.values()) {
        for (;;) {
          while (u.queue.length > 0 && u.queue[0]!.at <= simNow) due.push(u.queue.shift()!);
          if (u.queue.length > 0 || u.phase === 'done' || u.nextAt > simNow) break;
          playDay(u);
        }
        if (u.phase === 'done' && u.queue.length === 0) users.delete(u.index);
      }
      due.sort((a, b) => a.at - b.at || a.user - b.user || a.step - b.step);
      counts.messages += due.length;
      return { optIns, due };
    },
    stats: () => ({ users: created, active: users.size, ...counts }),
    phases() {
      const out: Record<Phase, number> = { trial: 0, paying: 0, past_due: 0, done: 0 };
      for (const u of users.values()) out[u.phase]++;
      return out;
    },
  };
}

// ------------------------------------------------------------------ the running generator

export interface GeneratorOptions extends PopulationOptions {
  /** How often the simulation advances (default 250 ms). */
  tickMs?: number;
  /**
   * Most simulated time one tick may cover (default 2 s): a generator that fell behind (a
   * slow product, a paused process) slows its simulation instead of sending a burst.
   */
  maxStepMs?: number;
  /** Messages per posted batch (default 200; the ingest API takes up to 500 KB). */
  batchSize?: number;
}

export interface GeneratorDeps {
  /**
   * Posts a Segment batch (`/v1/batch`). Rejects with a retriable error (`isRetriable`) when
   * trying again may help; any other rejection stops the generator (a wrong key or URL).
   */
  postBatch(batch: SegmentMessage[]): Promise<void>;
  /**
   * Opts the user in to marketing email and in-app messages; errors as for `postBatch`.
   * Without it nobody opts in (marketing rules then send nothing).
   */
  optIn?: (userId: string) => Promise<void>;
  logger: Logger;
  now?: () => number;
}

export interface GeneratorStats extends PopulationStats {
  /** Messages the product accepted. */
  events: number;
  optIns: number;
  /** Failed attempts that are retried. */
  retries: number;
  /** The last failure while it is being retried, else null. */
  retrying: string | null;
}

export interface Generator {
  readonly name: 'generator';
  start(): Promise<void>;
  /** Ends the running tick and stops; messages not posted yet are dropped. */
  stop(): Promise<void>;
  health(): { ok: boolean; details: Record<string, unknown> };
  stats(): GeneratorStats;
  /** Advances the simulation by the time passed since the last tick and posts what became due. */
  tick(): Promise<void>;
  /** Settles when the generator stops: rejects with the error that stopped it, if one did. */
  readonly done: Promise<void>;
}

const OPT_IN_CONCURRENCY = 8;

interface Work {
  optIns: string[];
  batches: SegmentMessage[][];
}

export function createGenerator(opts: GeneratorOptions, deps: GeneratorDeps): Generator {
  const population = createPopulation(opts);
  const now = deps.now ?? Date.now;
  const tickMs = opts.tickMs ?? 250;
  const maxStepMs = opts.maxStepMs ?? 2000;
  const batchSize = opts.batchSize ?? 200;
  const log = deps.logger.child({ component: 'generator' });
  let simNow = 0;
  let lastWall: number | null = null;
  let work: Work | null = null;
  let events = 0;
  let optIns = 0;
  let retries = 0;
  let retrying: string | null = null;
  let failures = 0;
  /** Why the product refused the messages, once it has. */
  let refused: string | null = null;
  let running = false;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<void> | null = null;
  let settle!: { resolve: () => void; reject: (err: unknown) => void };
  const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  // A caller that never awaits `done` must not see an unhandled rejection.
  done.catch(() => undefined);

  const next = (): Work => {
    const wall = now();
    simNow += Math.min(Math.max(0, wall - (lastWall ?? wall)), maxStepMs);
    lastWall = wall;
    const { optIns: toOptIn, due } = population.advance(simNow);
    // A message due at simulated `at` happened `simNow - at` ago: real timestamps, in order.
    const stamped = due.map(
      (d) =>
        ({
          ...d.message,
          timestamp: new Date(wall - (simNow - d.at)).toISOString(),
        }) as SegmentMessage,
    );
    const batches: SegmentMessage[][] = [];
    for (let i = 0; i < stamped.length; i += batchSize)
      batches.push(stamped.slice(i, i + batchSize));
    return { optIns: toOptIn, batches };
  };

  /** Runs the work in order: opt-ins (a few at a time) before the events of the same users. */
  const perform = async (w: Work) => {
    const optIn = deps.optIn;
    while (optIn && w.optIns.length > 0) {
      const chunk = w.optIns.slice(0, OPT_IN_CONCURRENCY);
      const results = await Promise.allSettled(chunk.map((userId) => optIn(userId)));
      w.optIns = w.optIns.filter((_, i) => i >= chunk.length || results[i]!.status === 'rejected');
      optIns += results.filter((r) => r.status === 'fulfilled').length;
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
    while (w.batches.length > 0) {
      const batch = w.batches[0]!;
      await deps.postBatch(batch);
      w.batches.shift();
      events += batch.length;
    }
  };

  const tick = async () => {
    // Work a failed attempt left is retried first, and the simulation waits for it: the
    // product sees the same messages (same ids, same timestamps) once it answers again.
    if (work === null) work = next();
    else lastWall = now();
    try {
      await perform(work);
      work = null;
      failures = 0;
      retrying = null;
    } catch (err) {
      if (!isRetriable(err)) throw err;
      retries++;
      failures++;
      retrying = errorMessage(err);
      // One line per doubling of the streak: a product that is down for long is not a flood.
      if ((failures & (failures - 1)) === 0)
        log.warn(
          { attempt: failures, err: retrying },
          'generator: the product did not take the messages; retrying',
        );
    }
  };

  const finish = (err?: unknown) => {
    running = false;
    if (timer) clearTimeout(timer);
    if (err === undefined) settle.resolve();
    else {
      refused ??= errorMessage(err);
      settle.reject(err);
    }
  };

  const loop = () => {
    if (!running) return;
    current = tick().then(
      () => {
        current = null;
        if (!running) return;
        // Back off while retrying (up to 10 s between attempts), else keep the pace.
        const delay = failures === 0 ? tickMs : Math.min(tickMs * 2 ** failures, 10_000);
        timer = setTimeout(loop, delay);
      },
      (err: unknown) => {
        current = null;
        log.error(
          { err: errorMessage(err) },
          'generator: the product refused the messages; stopped',
        );
        finish(err);
      },
    );
  };

  return {
    name: 'generator',
    done,
    async start() {
      if (running) return;
      running = true;
      lastWall = now();
      loop();
    },
    async stop() {
      running = false;
      if (timer) clearTimeout(timer);
      await current?.catch(() => undefined);
      finish();
    },
    tick,
    stats: () => ({ ...population.stats(), events, optIns, retries, retrying }),
    health: () => ({
      ok: refused === null && failures < 5,
      details: { ...population.stats(), ...population.phases(), events, retrying, refused },
    }),
  };
}

/** The one-line progress report: cheap to compute, for a terminal. */
export function progressLine(s: GeneratorStats, extra: string[] = []): string {
  return [
    `generator: ${s.users} users (${s.active} in the simulation)`,
    `${s.events} events`,
    `${s.converted} subscribed`,
    `${s.cancelled} cancelled`,
    ...extra,
    ...(s.retrying ? [`retrying: ${s.retrying}`] : []),
  ].join(', ');
}
