// Quiet hours in the user's timezone: a send that falls inside them is deferred to their
// end (through the durable delay queue), never dropped. Transactional messages, in-app
// messages (seen only when the user opens the app) and webhooks (machine to machine) are
// not held back.
import type { Channel } from '../../platform/contracts.ts';
import { TRANSACTIONAL } from '../preferences/model.ts';
import { CONTINUE, type SendContext, type Stage } from '../stage.ts';

export interface QuietWindow {
  /** Minutes after local midnight. */
  start: number;
  end: number;
}

/** `HH:MM-HH:MM` (may wrap midnight); empty or equal ends: no quiet hours. */
export function parseQuietHours(spec: string): QuietWindow | null {
  if (spec.trim() === '') return null;
  const m = /^\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]):([0-5]\d)\s*$/.exec(spec);
  if (!m) throw new Error(`quiet hours "${spec}" must look like 21:00-08:00`);
  const start = Number(m[1]) * 60 + Number(m[2]);
  const end = Number(m[3]) * 60 + Number(m[4]);
  return start === end ? null : { start, end };
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz,
      hourCycle: 'h23',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(tz, f);
  }
  return f;
}

/** Minutes (with fraction) after local midnight in `tz`. */
export function localMinutes(ts: number, tz: string): number {
  let h = 0;
  let m = 0;
  let s = 0;
  for (const p of formatter(tz).formatToParts(new Date(ts))) {
    if (p.type === 'hour') h = Number(p.value);
    else if (p.type === 'minute') m = Number(p.value);
    else if (p.type === 'second') s = Number(p.value);
  }
  return h * 60 + m + s / 60 + (ts % 1000) / 60_000;
}

/** When the quiet hours containing `now` end (epoch ms), or null if `now` is outside them. */
export function quietHoursEnd(now: number, tz: string, w: QuietWindow): number | null {
  const m = localMinutes(now, tz);
  const inside = w.start < w.end ? m >= w.start && m < w.end : m >= w.start || m < w.end;
  if (!inside) return null;
  let until = now + Math.round(((((w.end - m) % 1440) + 1440) % 1440) * 60_000);
  // A DST change inside the window shifts the wall clock: correct by the difference.
  let diff = w.end - localMinutes(until, tz);
  if (diff > 720) diff -= 1440;
  if (diff < -720) diff += 1440;
  until += Math.round(diff * 60_000);
  return Math.max(until, now + 1000);
}

const HELD_CHANNELS: ReadonlySet<Channel> = new Set<Channel>(['email', 'sms', 'push']);

export function createQuietHoursStage(config: { quietHours: string }): Stage {
  const window = parseQuietHours(config.quietHours);
  return {
    name: 'quiet_hours',
    async run(ctx: SendContext) {
      if (!window || ctx.send.category === TRANSACTIONAL || !HELD_CHANNELS.has(ctx.channel))
        return CONTINUE;
      const until = quietHoursEnd(ctx.now, ctx.recipient.timezone, window);
      if (until === null) return CONTINUE;
      return {
        kind: 'defer',
        until,
        retry: false,
        reason: `quiet_hours until ${new Date(until).toISOString()} (${ctx.recipient.timezone})`,
      };
    },
  };
}
