// Scenario harness: compile rules and segments given inline, feed events through the same
// simulation `lifecycle simulate` uses, collect the send commands.
import type { NormalisedEvent, SendCommand } from '../../platform/contracts.ts';
import type { RuleSet } from '../../rules/types.ts';
import { compileRuleSet, formatRuleError } from '../../rules/index.ts';
import {
  createSimulation,
  type Simulation,
  type SimulationSummary,
} from '../../engine/core/simulate.ts';

/** Monday 2 March 2026, 10:00 UTC: the scenarios' day zero. */
export const T0 = Date.parse('2026-03-02T10:00:00.000Z');
const UNIT = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `at('3d')`, `at('2h')`: T0 plus a duration; a number is taken as ms after T0. */
export function at(offset: string | number = 0): number {
  if (typeof offset === 'number') return T0 + offset;
  const m = /^(-?[0-9]+)(s|m|h|d)$/.exec(offset);
  if (!m) throw new Error(`bad offset ${offset}`);
  return T0 + Number(m[1]) * UNIT[m[2] as keyof typeof UNIT];
}

export function compile(rules: unknown[], segments: unknown[] = []): RuleSet {
  const files = [
    ...rules.map((content, i) => ({ file: `rule-${i}.json`, content })),
    ...segments.map((content, i) => ({ file: `segments/segment-${i}.json`, content })),
  ];
  const res = compileRuleSet(files);
  if (!res.ok)
    throw new Error(`rules do not compile:\n${res.errors.map(formatRuleError).join('\n')}`);
  return res.ruleSet;
}

let counter = 0;
/** A normalised event; id defaults to a fresh unique one. */
export function ev(
  userId: string,
  type: string,
  when: string | number,
  extra: {
    properties?: Record<string, unknown>;
    traits?: Record<string, unknown>;
    id?: string;
  } = {},
): NormalisedEvent {
  const ts = at(when);
  const e: NormalisedEvent = {
    id: extra.id ?? `e${++counter}`,
    userId,
    type,
    ts,
    receivedAt: ts,
    source: 'test',
    properties: extra.properties ?? {},
  };
  if (extra.traits) e.traits = extra.traits;
  return e;
}

export function identify(
  userId: string,
  when: string | number,
  traits: Record<string, unknown>,
  id?: string,
): NormalisedEvent {
  return ev(userId, 'identify', when, id === undefined ? { traits } : { traits, id });
}

export interface RunResult {
  sends: SendCommand[];
  summary: SimulationSummary;
  sim: Simulation;
}

export function run(
  ruleSet: RuleSet,
  events: NormalisedEvent[],
  until?: string | number,
): RunResult {
  const sim = createSimulation({ ruleSet: () => ruleSet });
  const sends: SendCommand[] = [];
  for (const e of events) sends.push(...sim.event(e));
  if (until !== undefined) sends.push(...sim.advanceTo(at(until)));
  return { sends, summary: sim.summary(), sim };
}

/** The parts of a send a scenario states: rule, user, when, and what triggered it. */
export function brief(s: SendCommand): {
  rule: string;
  user: string;
  at: string;
  trigger: string;
  template: string;
  holdout: boolean;
} {
  return {
    rule: s.ruleId,
    user: s.userId,
    at: new Date(s.createdAt).toISOString(),
    trigger: s.triggeredBy.eventId,
    template: s.template,
    holdout: s.holdout,
  };
}

/** Minimal rule with defaults a scenario can override. */
export function rule(id: string, overrides: Record<string, unknown>): Record<string, unknown> {
  return {
    id,
    category: 'marketing',
    trigger: { event: 'user_registered' },
    action: { send: { template: id.replace(/[^A-Za-z0-9_.-]/g, '_'), channels: ['email'] } },
    ...overrides,
  };
}
