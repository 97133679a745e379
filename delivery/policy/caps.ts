// Frequency caps across rules, per channel per rolling day and week. Each channel has its own
// limits (LC_CAPS), falling back to LC_CAP_PER_DAY/LC_CAP_PER_WEEK for the channels that are
// capped by default. Transactional sends are exempt. When a channel is full, the
// higher-priority send wins: it takes the slot of a lower-priority send of the same channel
// that is still waiting (quiet hours, retry), which is then suppressed with the reason;
// otherwise the new send is the one suppressed.
import { CHANNELS, type Channel } from '../../platform/contracts.ts';
import { ConfigError } from '../../platform/config.ts';
import { TRANSACTIONAL } from '../preferences/model.ts';
import { CONTINUE, type SendContext, type Stage } from '../stage.ts';
import type { CapHolder, CapLimits, CapStore } from './caps-store.ts';

/** Limits per channel; null: the channel is not capped. */
export type ChannelCaps = Readonly<Record<Channel, CapLimits | null>>;

/**
 * Channels LC_CAP_PER_DAY/LC_CAP_PER_WEEK apply to when LC_CAPS does not name them: the ones
 * that interrupt the user. Webhooks are system integrations (a CRM, a data warehouse), not
 * messages to a person. In-app messages make no notification: they wait in the inbox until
 * the user opens the app (which is also why quiet hours skip them), and the inbox keeps only
 * the newest messages. Either can still be capped by naming it in LC_CAPS.
 */
export const CAPPED_BY_DEFAULT: ReadonlySet<Channel> = new Set<Channel>(['email', 'sms', 'push']);

const ENTRY = /^([a-z]+)\s*:\s*(?:(none)|(\d+)\s*\/\s*(\d+))$/;

/**
 * Parses LC_CAPS: comma-separated `<channel>:<per day>/<per week>` or `<channel>:none`, e.g.
 * `email:3/10,sms:1/3,push:5/20,inapp:none`. A 0 leaves that window uncapped; `0/0` is `none`.
 * Throws a ConfigError with one line per bad entry.
 */
export function parseChannelCaps(spec: string): Partial<Record<Channel, CapLimits | null>> {
  const out: Partial<Record<Channel, CapLimits | null>> = {};
  const problems: string[] = [];
  const bad = (entry: string, why: string) => problems.push(`LC_CAPS entry "${entry}": ${why}`);
  for (const raw of spec.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const m = ENTRY.exec(entry);
    if (!m) {
      bad(entry, 'must be <channel>:<per day>/<per week> or <channel>:none, e.g. sms:1/3');
      continue;
    }
    const channel = m[1] as Channel;
    if (!CHANNELS.includes(channel)) {
      bad(entry, `unknown channel "${m[1]}" (one of ${CHANNELS.join(', ')})`);
      continue;
    }
    if (channel in out) {
      bad(entry, `${channel} is listed twice`);
      continue;
    }
    if (m[2]) {
      out[channel] = null;
      continue;
    }
    const perDay = Number(m[3]);
    const perWeek = Number(m[4]);
    if (perDay > 0 && perWeek > 0 && perDay > perWeek) {
      bad(
        entry,
        `${perDay} per day is more than ${perWeek} per week; the order is <per day>/<per week>`,
      );
      continue;
    }
    out[channel] = perDay === 0 && perWeek === 0 ? null : { perDay, perWeek };
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out;
}

/** The limits of every channel: LC_CAPS where it names the channel, else the defaults. */
export function resolveChannelCaps(config: {
  capPerDay: number;
  capPerWeek: number;
  channelCaps: string;
}): ChannelCaps {
  const own = parseChannelCaps(config.channelCaps);
  const fallback =
    config.capPerDay === 0 && config.capPerWeek === 0
      ? null
      : { perDay: config.capPerDay, perWeek: config.capPerWeek };
  const out = {} as Record<Channel, CapLimits | null>;
  for (const channel of CHANNELS) {
    const explicit = own[channel];
    out[channel] =
      explicit !== undefined ? explicit : CAPPED_BY_DEFAULT.has(channel) ? fallback : null;
  }
  return Object.freeze(out);
}

export interface CapsStageDeps {
  caps: CapStore;
  /** A parked lower-priority send lost its slot to `winner`: suppress it and record why. */
  onPreempted(victim: CapHolder, ctx: SendContext): Promise<void>;
}

export function createCapsStage(caps: ChannelCaps, deps: CapsStageDeps): Stage {
  return {
    name: 'frequency_cap',
    async run(ctx: SendContext) {
      const limits = caps[ctx.channel];
      if (ctx.send.category === TRANSACTIONAL || !limits) return CONTINUE;
      const { send } = ctx;
      const r = await deps.caps.reserve(
        send.userId,
        ctx.channel,
        {
          sendId: send.sendId,
          ruleId: send.ruleId,
          priority: send.priority,
          variant: send.variant,
          category: send.category,
        },
        ctx.now,
        limits,
      );
      if (r.kind === 'capped')
        return { kind: 'suppressed', reason: `frequency_cap:${ctx.channel}:${r.window}` };
      ctx.capHeld = true;
      if (r.kind === 'preempted') await deps.onPreempted(r.victim, ctx);
      return CONTINUE;
    },
  };
}
