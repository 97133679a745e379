// Claims: the record that makes a sendId's effect happen once per channel. States:
//   claimed (a worker holds a lease; phase `sending` once a provider call may have started)
//   deferred | retrying (parked in the delay queue under generation g: only that entry resumes it;
//     a send parked after a provider call that ended without an answer keeps phase `sending`,
//     so the pass that resumes it asks the provider before sending again)
//   sent | suppressed | holdout | failed (terminal: never acted on again; the outcome is kept so a
//   lost outcome message can be re-emitted).
// A worker that dies leaves `claimed` with a lease; after it runs out another worker takes the
// send over. If the dead worker was in phase `sending`, the provider may already have accepted
// the message: the send is retried with the same Message-ID (at-least-once at the provider,
// deduplicable by the receiver). That window is the time between the provider's accept and the
// `sent` write below, a single Redis round trip.
import type { Redis } from 'ioredis';
import type { Channel } from '../../platform/contracts.ts';
import type { KeySpace } from '../../platform/keys.ts';
import type { FinalStatus } from '../stage.ts';
import { script } from '../lua.ts';

export type ClaimResult =
  | {
      kind: 'new' | 'resumed' | 'reclaimed';
      gen: number;
      attempts: number;
      wasSending: boolean;
      /** The provider whose call ended without an answer, when the send was parked naming it. */
      sendingAt?: string;
    }
  | {
      kind: 'done';
      status: FinalStatus;
      reason: string | null;
      provider: string | null;
      attempts: number;
    }
  | { kind: 'waiting'; gen: number }
  | { kind: 'busy'; leaseUntil: number };

export interface ClaimRef {
  userId: string;
  sendId: string;
  channel: Channel;
}

export interface ClaimStore {
  claim(
    ref: ClaimRef,
    owner: string,
    now: number,
    leaseMs: number,
    resumeGen: number | null,
  ): Promise<ClaimResult>;
  /** A provider call is about to start: from here a takeover may duplicate the message. */
  markSending(ref: ClaimRef, owner: string): Promise<boolean>;
  /** Terminal state; false if this worker no longer holds the claim. */
  finish(
    ref: ClaimRef,
    owner: string,
    status: FinalStatus,
    reason: string | null,
    provider: string | null,
    attempts: number,
  ): Promise<boolean>;
  /**
   * Park under a new generation (the delay-queue entry with that generation resumes it).
   * `unsettled`: the last provider call ended without an answer, and the resumed pass is told
   * so (`wasSending`); a string names the provider of that call (`sendingAt`).
   */
  park(
    ref: ClaimRef,
    owner: string,
    state: 'deferred' | 'retrying',
    gen: number,
    attempts: number,
    unsettled?: boolean | string,
  ): Promise<boolean>;
  /** Suppress a parked send (a higher-priority send took its cap slot); false if it is not parked. */
  suppressIfParked(ref: ClaimRef, reason: string): Promise<boolean>;
}

/** The stored phase of a parked send: `sending`, or `sending:<provider>` naming the unanswered call's provider. */
export const phaseOf = (unsettled: boolean | string): string =>
  typeof unsettled === 'string' && unsettled !== ''
    ? `sending:${unsettled}`
    : unsettled
      ? 'sending'
      : '';

/** What a stored phase tells the pass that takes the claim. */
export function phase(ph: string): { wasSending: boolean; sendingAt?: string } {
  if (ph.startsWith('sending:')) return { wasSending: true, sendingAt: ph.slice(8) };
  return { wasSending: ph === 'sending' };
}

/** Claims are kept longer than any topic retention, so a replay never sends again. */
const CLAIM_TTL_SECONDS = 45 * 24 * 3600;

const CLAIM = script(`
local st = redis.call('HGET', KEYS[1], 'st')
local now = tonumber(ARGV[2])
local lease = now + tonumber(ARGV[3])
if not st then
  redis.call('HSET', KEYS[1], 'st', 'claimed', 'ow', ARGV[1], 'lu', lease, 'g', 0, 'a', 0, 'ph', '', 't', now)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return {'new', 0, 0, ''}
end
local g = tonumber(redis.call('HGET', KEYS[1], 'g') or '0')
local a = tonumber(redis.call('HGET', KEYS[1], 'a') or '0')
if st == 'sent' or st == 'suppressed' or st == 'failed' or st == 'holdout' then
  return {'done', st, redis.call('HGET', KEYS[1], 'rs') or '', redis.call('HGET', KEYS[1], 'pv') or '', a}
end
if st == 'deferred' or st == 'retrying' then
  if ARGV[4] ~= '' and tonumber(ARGV[4]) == g then
    redis.call('HSET', KEYS[1], 'st', 'claimed', 'ow', ARGV[1], 'lu', lease, 't', now)
    return {'resumed', g, a, redis.call('HGET', KEYS[1], 'ph') or ''}
  end
  return {'waiting', g}
end
local ow = redis.call('HGET', KEYS[1], 'ow')
local lu = tonumber(redis.call('HGET', KEYS[1], 'lu') or '0')
if ow == ARGV[1] or lu <= now then
  local ph = redis.call('HGET', KEYS[1], 'ph') or ''
  redis.call('HSET', KEYS[1], 'ow', ARGV[1], 'lu', lease, 't', now)
  return {'reclaimed', g, a, ph}
end
return {'busy', lu}
`);

const MARK_SENDING = script(`
if redis.call('HGET', KEYS[1], 'ow') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'st') ~= 'claimed' then return 0 end
redis.call('HSET', KEYS[1], 'ph', 'sending')
return 1
`);

const FINISH = script(`
if redis.call('HGET', KEYS[1], 'ow') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'st') ~= 'claimed' then return 0 end
redis.call('HSET', KEYS[1], 'st', ARGV[2], 'rs', ARGV[3], 'pv', ARGV[4], 'a', ARGV[5], 'ph', '', 't', ARGV[6])
return 1
`);

const PARK = script(`
if redis.call('HGET', KEYS[1], 'ow') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'st') ~= 'claimed' then return 0 end
redis.call('HSET', KEYS[1], 'st', ARGV[2], 'g', ARGV[3], 'a', ARGV[4], 'ph', ARGV[6], 't', ARGV[5])
return 1
`);

const SUPPRESS_IF_PARKED = script(`
local st = redis.call('HGET', KEYS[1], 'st')
if st ~= 'deferred' and st ~= 'retrying' then return 0 end
redis.call('HSET', KEYS[1], 'st', 'suppressed', 'rs', ARGV[1], 'pv', '', 't', ARGV[2])
return 1
`);

export function createRedisClaimStore(deps: { redis: Redis; keys: KeySpace }): ClaimStore {
  const { redis, keys } = deps;
  const key = (r: ClaimRef) => keys.user(r.userId, `dlv:claim:${r.sendId}:${r.channel}`);
  return {
    async claim(ref, owner, now, leaseMs, resumeGen) {
      const r = (await CLAIM(
        redis,
        [key(ref)],
        [owner, now, leaseMs, resumeGen === null ? '' : String(resumeGen), CLAIM_TTL_SECONDS],
      )) as (string | number)[];
      const kind = String(r[0]);
      if (kind === 'done') {
        const nonEmpty = (v: unknown) => (v === '' || v === undefined ? null : String(v));
        return {
          kind,
          status: String(r[1]) as FinalStatus,
          reason: nonEmpty(r[2]),
          provider: nonEmpty(r[3]),
          attempts: Number(r[4]),
        };
      }
      if (kind === 'waiting') return { kind, gen: Number(r[1]) };
      if (kind === 'busy') return { kind, leaseUntil: Number(r[1]) };
      return {
        kind: kind as 'new' | 'resumed' | 'reclaimed',
        gen: Number(r[1]),
        attempts: Number(r[2]),
        ...phase(String(r[3] ?? '')),
      };
    },
    async markSending(ref, owner) {
      return Number(await MARK_SENDING(redis, [key(ref)], [owner])) === 1;
    },
    async finish(ref, owner, status, reason, provider, attempts) {
      return (
        Number(
          await FINISH(
            redis,
            [key(ref)],
            [owner, status, reason ?? '', provider ?? '', attempts, Date.now()],
          ),
        ) === 1
      );
    },
    async park(ref, owner, state, gen, attempts, unsettled = false) {
      return (
        Number(
          await PARK(
            redis,
            [key(ref)],
            [owner, state, gen, attempts, Date.now(), phaseOf(unsettled)],
          ),
        ) === 1
      );
    },
    async suppressIfParked(ref, reason) {
      return Number(await SUPPRESS_IF_PARKED(redis, [key(ref)], [reason, Date.now()])) === 1;
    },
  };
}
