// The `marketing_opt_in` trait of an `identify`: true asks for marketing email, false
// withdraws it. A trait is a standing state that apps send again with every identify, not an
// action, so it asks only once per user (no consent record and no request yet): after an
// unsubscribe or an expired request a stale `true` must not mail the person again; a new ask
// then comes from the preference API or the page.
import type { NormalisedEvent } from '../../platform/contracts.ts';
import { MARKETING } from '../preferences/model.ts';
import type { PreferencesStore } from '../preferences/store.ts';
import { OPT_IN_TRAIT, requestIdFor } from './model.ts';
import type { OptInService } from './service.ts';
import type { OptInStore } from './store.ts';

export interface IdentifyOptInDeps {
  doubleOptIn: boolean;
  service: OptInService;
  store: OptInStore;
  preferences: PreferencesStore;
}

/** Whether the event carries the opt-in trait (the worker hands only those over). */
export function carriesOptIn(event: NormalisedEvent): boolean {
  return event.type === 'identify' && typeof event.traits?.[OPT_IN_TRAIT] === 'boolean';
}

export function createIdentifyOptIns(deps: IdentifyOptInDeps) {
  return async function onOptInTrait(event: NormalisedEvent): Promise<void> {
    const wants = event.traits?.[OPT_IN_TRAIT];
    if (event.type !== 'identify' || typeof wants !== 'boolean') return;
    const { userId } = event;
    const record = (await deps.preferences.get(userId)).consents[MARKETING]?.email;
    if (!wants) {
      await deps.store.withdraw(userId, MARKETING, 'email', event.ts);
      if (record?.granted === true && record.at < event.ts)
        await deps.preferences.apply(
          userId,
          {
            records: [
              {
                category: MARKETING,
                channel: 'email',
                record: { granted: false, at: event.ts, source: 'identify' },
              },
            ],
          },
          { source: 'identify', at: event.ts },
        );
      return;
    }
    if (record) return;
    const traits = (event.traits ?? {}) as Record<string, unknown>;
    // The confirmation goes to the address the event names; an event without one (a client
    // key cannot set it) leaves the one ask to the event that has it.
    if (deps.doubleOptIn && typeof traits.email !== 'string') return;
    if (!deps.doubleOptIn) {
      await deps.preferences.apply(
        userId,
        {
          records: [
            {
              category: MARKETING,
              channel: 'email',
              record: { granted: true, at: event.ts, source: 'identify' },
            },
          ],
        },
        { source: 'identify', at: event.ts },
      );
      return;
    }
    // A replay of this same event is not an earlier ask: it finds its own request again.
    const own = requestIdFor(userId, MARKETING, 'email', event.id);
    const earlier = (await deps.store.list(userId)).filter(
      (r) => r.category === MARKETING && r.channel === 'email' && r.id !== own,
    );
    if (earlier.length > 0) return;
    await deps.service.ask({
      userId,
      category: MARKETING,
      channel: 'email',
      source: 'identify',
      via: 'identify',
      at: event.ts,
      trigger: event.id,
      user: traits,
    });
  };
}
