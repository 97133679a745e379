import { describe, expect, it } from 'vitest';
import type { OutgoingMessage, Publisher } from '../../platform/bus.ts';
import { LifecycleError } from '../../platform/errors.ts';
import { createEventWriter } from './event-writer.ts';
import { createRateLimiter } from './rate-limit.ts';
import { parseWriteKeys, presentedKey } from './auth.ts';

/** A publisher whose acknowledgements the test releases by hand. */
function gatedPublisher() {
  const sends: { messages: OutgoingMessage[]; ack: () => void; fail: (e: Error) => void }[] = [];
  const publisher: Publisher = {
    publish: (_topic, messages) =>
      new Promise<void>((ack, fail) => {
        sends.push({ messages, ack, fail });
      }),
  };
  return { publisher, sends };
}
const msg = (k: string): OutgoingMessage => ({ key: k, value: Buffer.from(k) });
const tick = () => new Promise((r) => setImmediate(r));

describe('event writer', () => {
  it('coalesces requests that arrive while a produce is in flight, and resolves each only after its own ack', async () => {
    const { publisher, sends } = gatedPublisher();
    const w = createEventWriter(publisher, 't');
    let aDone = false;
    const a = w.write([msg('a')]).then(() => (aDone = true));
    await tick();
    expect(sends).toHaveLength(1);
    const b = w.write([msg('b1'), msg('b2')]);
    const c = w.write([msg('c')]);
    await tick();
    expect(sends).toHaveLength(1);
    expect(w.inFlight()).toBe(4);
    sends[0]!.ack();
    await a;
    expect(aDone).toBe(true);
    await tick();
    expect(sends).toHaveLength(2);
    expect(sends[1]!.messages.map((m) => m.key)).toEqual(['b1', 'b2', 'c']);
    sends[1]!.ack();
    await Promise.all([b, c]);
    expect(w.inFlight()).toBe(0);
  });

  it('answers 503 after the timeout, then refuses at once while failing, and recovers', async () => {
    const { publisher, sends } = gatedPublisher();
    const w = createEventWriter(publisher, 't', { timeoutMs: 30, failFastMs: 50 });
    const started = Date.now();
    const err = await w.write([msg('a')]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LifecycleError);
    expect((err as LifecycleError).status).toBe(503);
    expect(Date.now() - started).toBeLessThan(500);
    await expect(w.write([msg('b')])).rejects.toMatchObject({ status: 503 });
    expect(w.healthy()).toBe(false);
    sends[0]!.ack();
    await new Promise((r) => setTimeout(r, 60));
    const c = w.write([msg('c')]);
    await tick();
    sends[1]!.ack();
    await c;
    expect(w.healthy()).toBe(true);
  });

  it('bounds memory: refuses with 503 beyond maxInFlightEvents', async () => {
    const { publisher, sends } = gatedPublisher();
    const w = createEventWriter(publisher, 't', { maxInFlightEvents: 3 });
    const a = w.write([msg('a'), msg('b')]);
    await expect(w.write([msg('c'), msg('d')])).rejects.toMatchObject({ status: 503 });
    await tick();
    sends[0]!.ack();
    await a;
  });

  it('splits at request boundaries above maxBatchMessages', async () => {
    const { publisher, sends } = gatedPublisher();
    const w = createEventWriter(publisher, 't', { maxBatchMessages: 3 });
    const all = [w.write([msg('a'), msg('b')]), w.write([msg('c'), msg('d')]), w.write([msg('e')])];
    await tick();
    expect(sends[0]!.messages.map((m) => m.key)).toEqual(['a', 'b']);
    sends[0]!.ack();
    await tick();
    await tick();
    expect(sends[1]!.messages.map((m) => m.key)).toEqual(['c', 'd', 'e']);
    sends[1]!.ack();
    await Promise.all(all);
  });
});

describe('rate limiter', () => {
  it('refills continuously and lets one oversized request through a full bucket', () => {
    const r = createRateLimiter(10, () => 0);
    expect(r.take('k', 8, 0).ok).toBe(true);
    expect(r.take('k', 5, 0)).toEqual({ ok: false, retryAfterMs: 300 });
    expect(r.take('k', 5, 300).ok).toBe(true);
    expect(r.take('big', 50, 0).ok).toBe(true);
    expect(r.take('big', 1, 1000).ok).toBe(false);
  });
});

describe('write keys', () => {
  it('maps keys to sources without keeping the key and reads Basic, Bearer and body keys', () => {
    const store = parseWriteKeys(['web:abc', 'ios:d:e']);
    expect(store.sourceOf('abc')).toBe('web');
    expect(store.sourceOf('d:e')).toBe('ios');
    expect(store.sourceOf('zzz')).toBeUndefined();
    expect(presentedKey(`Basic ${Buffer.from('abc:').toString('base64')}`, undefined)).toBe('abc');
    expect(presentedKey('Bearer abc', undefined)).toBe('abc');
    expect(presentedKey(undefined, { writeKey: 'abc' })).toBe('abc');
    expect(presentedKey(undefined, {})).toBeUndefined();
    expect(() => parseWriteKeys(['nokey'])).toThrow(/source:key/);
  });
});
