// Starting and confirming opt-in requests. Starting stores the request and publishes its
// confirmation email and its reminder to the sends topic, with sendIds that follow from the
// request: delivery claims them, so publishing again (a retried call, a replayed event) sends
// nothing twice, and the reminder waits in the delay queue until it is due (policy/opt-in.ts).
// Confirming marks the request confirmed with its evidence, then grants the consent with
// source `double_opt_in`.
import { encodeWithHeader, sendCodec } from '../../platform/avro.ts';
import type { Publisher } from '../../platform/bus.ts';
import type { Channel } from '../../platform/contracts.ts';
import type { UserDirectory } from '../../platform/users.ts';
import type { TrackingLinks } from '../links.ts';
import { MARKETING } from '../preferences/model.ts';
import type { OptInGate } from '../preferences/routes.ts';
import type { PreferencesStore } from '../preferences/store.ts';
import {
  CONFIRMED_CHANNELS,
  confirmationSend,
  DOUBLE_OPT_IN_SOURCE,
  linkExpiry,
  newRequest,
  statusAt,
  type OptInRequest,
  type OptInStatus,
  type OptInTimes,
} from './model.ts';
import type { OptInStore } from './store.ts';

export interface OptInServiceDeps {
  store: OptInStore;
  preferences: PreferencesStore;
  links: TrackingLinks;
  publisher: Publisher;
  sendsTopic: string;
  times: OptInTimes;
  /** The user's traits as the engine holds them (address, locale, name) for the email; the caller's win. */
  users?: UserDirectory;
  now: () => number;
}

export interface OptInAsk {
  userId: string;
  category: string;
  channel: Channel;
  /** Where the person asked (`signup_form`, `preference_page`, `identify`). */
  source: string;
  /** The door it came through (`admin_api`, `preference_page`, `identify`). */
  via: string;
  /** When the person asked (an event's time; else now). */
  at: number;
  /** What started it, when it has a stable id (an event): a replay then starts nothing new. */
  trigger?: string;
  /** Traits for the email (address, locale, name), e.g. those of the `identify` that asked. */
  user?: Record<string, unknown>;
}

export type AskResult =
  { kind: 'already_granted' } | { kind: 'started' | 'pending'; request: OptInRequest };

/** How a confirmation link reads now: what its page shows. */
export type LinkState =
  | { kind: 'invalid' }
  | { kind: 'expired' }
  | { kind: Exclude<OptInStatus, 'expired'>; request: OptInRequest };

export interface OptInService {
  ask(a: OptInAsk): Promise<AskResult>;
  /** What a confirmation link is about at `now` (the GET: nothing changes). */
  read(token: string, now: number): Promise<LinkState>;
  /** Confirms through the link (the POST); idempotent. */
  confirm(
    token: string,
    evidence: { at: number; ip: string; userAgent: string },
  ): Promise<LinkState & { granted?: boolean }>;
}

export function createOptInService(deps: OptInServiceDeps): OptInService {
  const { store, preferences, links, times } = deps;

  async function publish(r: OptInRequest, user: Record<string, unknown>): Promise<void> {
    const expiresAt = linkExpiry(r, times);
    const link = {
      url: links.confirmation({
        userId: r.userId,
        requestId: r.id,
        category: r.category,
        channel: r.channel,
        exp: expiresAt,
      }),
      expiresAt,
    };
    const sends = [confirmationSend(r, 'confirmation', user, link)];
    if (r.remindAt !== null) sends.push(confirmationSend(r, 'reminder', user, link));
    await deps.publisher.publish(
      deps.sendsTopic,
      sends.map((s) => ({ key: s.userId, ...encodeWithHeader(sendCodec, s) })),
    );
  }

  /** Grants the consent a confirmed request stands for, unless the person changed it since. */
  async function grant(r: OptInRequest): Promise<boolean> {
    const at = r.confirmed!.at;
    const prefs = await preferences.get(r.userId);
    const current = prefs.consents[r.category]?.[r.channel];
    if (current && current.at >= at) return current.granted;
    await preferences.apply(
      r.userId,
      {
        records: [
          {
            category: r.category,
            channel: r.channel,
            record: { granted: true, at, source: DOUBLE_OPT_IN_SOURCE },
          },
        ],
      },
      { source: DOUBLE_OPT_IN_SOURCE, at },
    );
    return true;
  }

  async function linked(token: string, now: number) {
    const link = links.readConfirmation(token, now);
    if (link.status === 'invalid') return { state: { kind: 'invalid' } as const };
    const r = await store.get(link.value.userId, link.value.requestId);
    // An erased user's requests are gone: the link is no longer anyone's.
    if (!r) return { state: { kind: 'invalid' } as const };
    if (r.status === 'confirmed') return { state: { kind: 'confirmed', request: r } as const };
    if (link.status === 'expired') return { state: { kind: 'expired' } as const };
    const status = statusAt(r, now);
    if (status === 'expired') return { state: { kind: 'expired' } as const };
    return { state: { kind: status, request: r } as const, ok: true };
  }

  return {
    async ask(a) {
      const prefs = await preferences.get(a.userId);
      if (prefs.consents[a.category]?.[a.channel]?.granted === true)
        return { kind: 'already_granted' };
      const request = newRequest(
        {
          userId: a.userId,
          category: a.category,
          channel: a.channel,
          source: a.source,
          via: a.via,
        },
        a.trigger ?? `at:${a.at}`,
        a.at,
        times,
      );
      const started = await store.start(request, deps.now());
      const profile = deps.users ? await deps.users.profile(a.userId) : null;
      // Published again for a request already pending: the same sendIds, which delivery
      // sends once, so a start whose publish failed is completed by the next ask.
      await publish(started.request, { ...(profile?.traits ?? {}), ...(a.user ?? {}) });
      return started;
    },
    async read(token, now) {
      return (await linked(token, now)).state;
    },
    async confirm(token, evidence) {
      const { state } = await linked(token, evidence.at);
      if (state.kind === 'confirmed') return { ...state, granted: await grant(state.request) };
      if (state.kind !== 'pending') return state;
      const done = await store.confirm(state.request.userId, state.request.id, evidence);
      if (done.kind === 'unknown') return { kind: 'invalid' };
      if (done.kind === 'expired') return { kind: 'expired' };
      if (done.kind === 'withdrawn') return { kind: 'withdrawn', request: done.request };
      return { kind: 'confirmed', request: done.request, granted: await grant(done.request) };
    },
  };
}

/** The preference API's and page's view of double opt-in (preferences/routes.ts). */
export function optInGate(service: OptInService, store: OptInStore): OptInGate {
  return {
    covers: (category, channel) => category === MARKETING && CONFIRMED_CHANNELS.includes(channel),
    async ask(a) {
      const asked = await service.ask(a);
      if (asked.kind === 'already_granted') return null;
      const r = asked.request;
      return {
        requestId: r.id,
        category: r.category,
        channel: r.channel,
        requestedAt: r.requestedAt,
        expiresAt: r.expiresAt,
      };
    },
    withdraw: (userId, category, channel, at) => store.withdraw(userId, category, channel, at),
  };
}
