// The chain runner: how each final decision is applied to the claim, the cap slot and the
// delay queue, and which outcomes come out. Small in-test stores record the calls in order.
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../platform/logger.ts';
import type { CapStore } from '../policy/caps-store.ts';
import type { ClaimStore } from '../policy/claims.ts';
import type { DelayQueue } from './delay-queue.ts';
import { createSendPipeline } from './pipeline.ts';
import type { SentIndex } from '../sent-index.ts';
import { sendCommand } from '../../test/support/delivery-context.ts';
import type { SendContext, Stage, StageResult } from '../stage.ts';

function world(opts: { finishOk?: boolean } = {}) {
  const calls: string[] = [];
  const claims: ClaimStore = {
    claim: async () => ({ kind: 'new', gen: 0, attempts: 0, wasSending: false }),
    markSending: async () => true,
    finish: async (_r, _o, status, reason) => (
      calls.push(`finish:${status}:${reason ?? ''}`),
      opts.finishOk ?? true
    ),
    park: async (_r, _o, state, gen) => (calls.push(`park:${state}:${gen}`), true),
    suppressIfParked: async () => true,
  };
  const caps: CapStore = {
    reserve: async () => ({ kind: 'ok' }),
    commit: async () => void calls.push('cap:commit'),
    release: async (_u, _c, sendId) => void calls.push(`cap:release:${sendId}`),
  };
  const delayQueue: DelayQueue = {
    add: async (e) => void calls.push(`queue:add:${e.gen}:${e.dueAt}`),
    takeDue: async () => [],
    remove: async () => {},
    size: async () => 0,
  };
  const sentIndex: SentIndex = {
    remember: async () => void calls.push('sent-index'),
    lookup: async () => [],
  };
  return { calls, claims, caps, delayQueue, sentIndex };
}

const stage = (name: string, fn: (ctx: SendContext) => StageResult | void): Stage => ({
  name,
  run: async (ctx) => fn(ctx) ?? { kind: 'continue' },
});
const fresh = stage('claim', (ctx) => {
  ctx.fresh = true;
  ctx.gen = 2;
});
const holdCap = stage('frequency_cap', (ctx) => {
  ctx.capHeld = true;
});

function pipeline(w: ReturnType<typeof world>, stages: Stage[]) {
  return createSendPipeline({
    stages,
    claims: w.claims,
    caps: w.caps,
    delayQueue: w.delayQueue,
    sentIndex: w.sentIndex,
    owner: 'w1',
    logger: silentLogger(),
    defaults: { timezone: 'UTC', locale: 'en' },
  });
}

describe('send pipeline', () => {
  it('runs stages in order and stops at the first decision', async () => {
    const w = world();
    const seen: string[] = [];
    const p = pipeline(w, [
      fresh,
      stage('a', () => void seen.push('a')),
      stage('b', () => (seen.push('b'), { kind: 'suppressed', reason: 'nope' })),
      stage('c', () => void seen.push('c')),
    ]);
    const r = await p.process(sendCommand(), 'email', null, 1000);
    expect(seen).toEqual(['a', 'b']);
    expect(r.outcomes.map((o) => [o.id, o.status, o.reason])).toEqual([
      ['send-1:email:queued', 'queued', null],
      ['send-1:email:suppressed', 'suppressed', 'nope'],
    ]);
    expect(w.calls).toEqual(['finish:suppressed:nope']);
  });

  it('frees the cap slot of a send that ends unsent, keeps it for a sent one', async () => {
    const w = world();
    await pipeline(w, [
      fresh,
      holdCap,
      stage('render', () => ({ kind: 'failed', reason: 'render: boom', dlq: true })),
    ]).process(sendCommand(), 'email', null);
    expect(w.calls).toEqual(['finish:failed:render: boom', 'cap:release:send-1']);
    const w2 = world();
    const r = await pipeline(w2, [
      fresh,
      holdCap,
      stage('provider', () => ({ kind: 'sent', provider: 'smtp-1' })),
    ]).process(sendCommand(), 'email', null);
    expect(w2.calls.sort()).toEqual(['finish:sent:', 'sent-index']);
    expect(r.outcomes.at(-1)).toMatchObject({ status: 'sent', provider: 'smtp-1' });
  });

  it('a failure with dlq hands the reason to the caller', async () => {
    const r = await pipeline(world(), [
      fresh,
      stage('render', () => ({ kind: 'failed', reason: 'render: x', dlq: true })),
    ]).process(sendCommand(), 'email', null);
    expect(r.dlq).toBe('render: x');
    expect(r.outcomes.at(-1)).toMatchObject({ status: 'failed', reason: 'render: x' });
  });

  it('parks a deferred send: queue entry first, then the claim, under the next generation; the cap slot stays held', async () => {
    const w = world();
    const r = await pipeline(w, [
      fresh,
      holdCap,
      stage('quiet_hours', () => ({
        kind: 'defer',
        until: 5000,
        retry: false,
        reason: 'quiet_hours until …',
      })),
    ]).process(sendCommand(), 'email', null);
    expect(w.calls).toEqual(['queue:add:3:5000', 'park:deferred:3']);
    expect(r.outcomes.at(-1)).toMatchObject({ id: 'send-1:email:deferred:3', status: 'deferred' });
    const w2 = world();
    await pipeline(w2, [
      fresh,
      stage('provider', () => ({ kind: 'defer', until: 9000, retry: true, reason: 'retry 2/6' })),
    ]).process(sendCommand(), 'email', null);
    expect(w2.calls).toEqual(['queue:add:3:9000', 'park:retrying:3']);
  });

  it('a skipped duplicate re-emits the stored outcome and touches nothing', async () => {
    const w = world();
    const r = await pipeline(w, [
      stage('claim', () => ({
        kind: 'skip',
        reason: 'already sent',
        reemit: { status: 'sent', reason: null, provider: 'smtp-2' },
      })),
    ]).process(sendCommand(), 'email', null);
    expect(r.outcomes).toMatchObject([
      { id: 'send-1:email:sent', status: 'sent', provider: 'smtp-2' },
    ]);
    expect(w.calls).toEqual([]);
  });

  it('records holdouts with the holdout flag, and publishes nothing when the claim was lost', async () => {
    const r = await pipeline(world(), [
      fresh,
      stage('holdout', () => ({ kind: 'holdout' })),
    ]).process(sendCommand({ holdout: true }), 'email', null);
    expect(r.outcomes.at(-1)).toMatchObject({ status: 'holdout', holdout: true });
    const lost = await pipeline(world({ finishOk: false }), [
      stage('provider', () => ({ kind: 'sent', provider: 'x' })),
    ]).process(sendCommand(), 'email', null);
    expect(lost.outcomes).toEqual([]);
  });

  it('passes outcomes of preempted sends along', async () => {
    const r = await pipeline(world(), [
      fresh,
      stage('frequency_cap', (ctx) => {
        ctx.sideOutcomes.push({
          ...ctx.send,
          id: 'low:email:suppressed',
          sendId: 'low',
          channel: 'email',
          status: 'suppressed',
          reason: 'frequency_cap:email:preempted_by:rule-1',
          provider: null,
          attempt: 0,
          ts: 1,
        } as never);
      }),
      stage('quiet_hours', () => ({ kind: 'defer', until: 1, retry: false, reason: 'q' })),
    ]).process(sendCommand(), 'email', null);
    expect(r.outcomes.map((o) => o.id)).toEqual([
      'low:email:suppressed',
      'send-1:email:queued',
      'send-1:email:deferred:3',
    ]);
  });
});
