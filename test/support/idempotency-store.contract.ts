// The behaviour every Idempotency-Key store of the send API must have (Redis in production,
// in memory in the demo): run by delivery/send-api/idempotency.int.test.ts against the real
// Redis and by delivery/send-api/idempotency.test.ts against the in-memory one. Clocks are
// passed in, so 24 hours pass in a line.
import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import {
  IDEMPOTENCY_LEASE_MS,
  IDEMPOTENCY_RETENTION_MS,
  type IdempotencyStore,
} from '../../delivery/send-api/idempotency.ts';

const HOUR = 60 * 60 * 1000;

export function idempotencyStoreContract(store: () => IdempotencyStore): void {
  // Keys unique per test: the Redis store is shared by every run of the suite.
  const key = () => `order-placed:${randomUUID()}`;
  const answer = { status: 202, body: { sends: [{ sendId: 's1', status: 'queued' }] } };

  it('starts a key once, then replays its answer to every retry with the same request', async () => {
    const s = store();
    const k = key();
    const t0 = Date.now();
    const begun = await s.begin('key_a', k, 'fp1', t0);
    expect(begun.state).toBe('started');
    if (begun.state !== 'started') return;
    await s.complete('key_a', k, begun.token, answer);
    expect(await s.begin('key_a', k, 'fp1', t0 + 1000)).toEqual({ state: 'replay', answer });
    expect(await s.begin('key_a', k, 'fp1', t0 + 23 * HOUR)).toEqual({ state: 'replay', answer });
  });

  it('refuses the key for another request, answered or still in progress', async () => {
    const s = store();
    const k = key();
    const t0 = Date.now();
    const begun = await s.begin('key_a', k, 'fp1', t0);
    expect(await s.begin('key_a', k, 'fp2', t0 + 1)).toEqual({ state: 'mismatch' });
    if (begun.state !== 'started') throw new Error('not started');
    await s.complete('key_a', k, begun.token, answer);
    expect(await s.begin('key_a', k, 'fp2', t0 + 2)).toEqual({ state: 'mismatch' });
  });

  it('lets one of two concurrent requests with a key start; the other is told it is in progress', async () => {
    const s = store();
    const k = key();
    const t0 = Date.now();
    const both = await Promise.all([
      s.begin('key_a', k, 'fp1', t0),
      s.begin('key_a', k, 'fp1', t0),
    ]);
    expect(both.map((b) => b.state).sort()).toEqual(['in_progress', 'started']);
  });

  it('forgets the key 24 hours after the first request: the same key starts afresh', async () => {
    const s = store();
    const k = key();
    const t0 = Date.now();
    const begun = await s.begin('key_a', k, 'fp1', t0);
    if (begun.state !== 'started') throw new Error('not started');
    await s.complete('key_a', k, begun.token, answer);
    expect((await s.begin('key_a', k, 'fp2', t0 + IDEMPOTENCY_RETENTION_MS - 1)).state).toBe(
      'mismatch',
    );
    expect((await s.begin('key_a', k, 'fp2', t0 + IDEMPOTENCY_RETENTION_MS)).state).toBe('started');
  });

  it('keeps keys apart per credential', async () => {
    const s = store();
    const k = key();
    const t0 = Date.now();
    const a = await s.begin('key_a', k, 'fp1', t0);
    if (a.state !== 'started') throw new Error('not started');
    await s.complete('key_a', k, a.token, answer);
    expect((await s.begin('key_b', k, 'fp-other', t0)).state).toBe('started');
  });

  it('frees a key whose request failed, and one whose request died once its lease ends', async () => {
    const s = store();
    const failed = key();
    const t0 = Date.now();
    const first = await s.begin('key_a', failed, 'fp1', t0);
    if (first.state !== 'started') throw new Error('not started');
    await s.abandon('key_a', failed, first.token);
    expect((await s.begin('key_a', failed, 'fp2', t0 + 1)).state).toBe('started');

    const died = key();
    const dead = await s.begin('key_a', died, 'fp1', t0);
    if (dead.state !== 'started') throw new Error('not started');
    expect((await s.begin('key_a', died, 'fp1', t0 + IDEMPOTENCY_LEASE_MS - 1)).state).toBe(
      'in_progress',
    );
    const taken = await s.begin('key_a', died, 'fp1', t0 + IDEMPOTENCY_LEASE_MS);
    expect(taken.state).toBe('started');
    if (taken.state !== 'started') return;
    // The dead request's late completion and release change nothing; the taker's answer is kept.
    await s.abandon('key_a', died, dead.token);
    await s.complete('key_a', died, dead.token, { status: 500, body: {} });
    await s.complete('key_a', died, taken.token, answer);
    expect(await s.begin('key_a', died, 'fp1', t0 + IDEMPOTENCY_LEASE_MS + 1)).toEqual({
      state: 'replay',
      answer,
    });
    // A key that has its answer is not released by a late abandon either.
    await s.abandon('key_a', died, taken.token);
    expect((await s.begin('key_a', died, 'fp1', t0 + IDEMPOTENCY_LEASE_MS + 2)).state).toBe(
      'replay',
    );
  });
}
