// The engine core plugged into the runtime's ports, and the embedded (in-memory) engine:
// the same service on InMemoryBus with in-memory state and timers, for the demo.
import type { Logger } from 'pino';
import type { InMemoryBus } from '../../platform/bus.ts';
import type { NormalisedEvent } from '../../platform/contracts.ts';
import type { Registry } from '../../platform/metrics.ts';
import type { RuleSet } from '../../rules/types.ts';
import { createEngineCore, TIMER_EVENT } from '../core/engine-core.ts';
import { CAMPAIGN_EVENT, campaignRuleId } from '../core/campaign.ts';
import { deserializeState, serializeState, type UserState } from '../core/state.ts';
import {
  createEngineService,
  type EngineCorePort,
  type EngineService,
  type EngineServiceConfig,
  type StateCodecPort,
} from './engine-service.ts';
import { contactTerms } from './contacts.ts';
import { MemoryStores } from './stores.ts';

export interface CoreWiring {
  core: EngineCorePort<UserState>;
  codec: StateCodecPort<UserState>;
  evaluatedRules(event: NormalisedEvent): readonly string[];
  /** The contact terms a state files its user under in the staff lookup's index. */
  contactTerms(state: UserState): string;
}

const NO_RULES: readonly string[] = Object.freeze([]);

export function wireCore(ruleSet: () => RuleSet): CoreWiring {
  const core = createEngineCore({ ruleSet });
  // Rule ids per event type, computed once per rule set (this runs for every event).
  const idsByType = new WeakMap<RuleSet, Map<string, readonly string[]>>();
  return {
    core,
    codec: { serialize: serializeState, deserialize: deserializeState },
    contactTerms: (state) => contactTerms(state.traits),
    evaluatedRules(event) {
      if (event.type === TIMER_EVENT) {
        const id = event.properties.ruleId;
        return typeof id === 'string' ? [id] : [];
      }
      if (event.type === CAMPAIGN_EVENT) {
        const id = event.properties.campaignId;
        return typeof id === 'string' ? [campaignRuleId(id)] : [];
      }
      const rs = ruleSet();
      const rules = rs.byEvent.get(event.type);
      if (!rules) return NO_RULES;
      let byType = idsByType.get(rs);
      if (!byType) idsByType.set(rs, (byType = new Map()));
      let ids = byType.get(event.type);
      if (!ids) byType.set(event.type, (ids = rules.map((r) => r.def.id)));
      return ids;
    },
  };
}

/** The engine on the in-memory bus with in-memory state: one process, no services (demo, tests). */
export function createMemoryEngine(
  config: EngineServiceConfig,
  deps: {
    bus: InMemoryBus;
    ruleSet: () => RuleSet;
    logger: Logger;
    registry: Registry;
    clock?: () => number;
    reclaimFencedAfterMs?: number;
    /** Awaited before each batch (the campaigns view's catch-up, see EngineServiceDeps.prepare). */
    prepare?: (events: readonly NormalisedEvent[]) => Promise<void>;
  },
): { service: EngineService; stores: MemoryStores } {
  const stores = new MemoryStores(deps.clock);
  const wiring = wireCore(deps.ruleSet);
  const service = createEngineService(config, {
    bus: deps.bus,
    state: stores,
    timers: stores,
    contacts: stores,
    core: wiring.core,
    codec: wiring.codec,
    evaluatedRules: wiring.evaluatedRules,
    contactTerms: wiring.contactTerms,
    logger: deps.logger,
    registry: deps.registry,
    ruleSetVersion: deps.ruleSet().version,
    ...(deps.clock ? { clock: deps.clock } : {}),
    ...(deps.reclaimFencedAfterMs !== undefined
      ? { reclaimFencedAfterMs: deps.reclaimFencedAfterMs }
      : {}),
    ...(deps.prepare ? { prepare: deps.prepare } : {}),
  });
  return { service, stores };
}
