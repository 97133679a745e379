import { createHash } from 'node:crypto';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { OutgoingMessage, Publisher } from '../../platform/bus.ts';
import { LifecycleError } from '../../platform/errors.ts';
import { waitFor } from '../../test/support/wait.ts';
import { createEventWriter, type EventWriter } from './event-writer.ts';
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

/**
 * Kafka as the writer sees it during an outage: `hang` (a produce neither succeeds nor fails
 * until released, like a broker that accepted the connection and went silent), `fail` (refused
 * at once, like ECONNREFUSED) or `ok`.
 */
function outagePublisher() {
  const hung: { ack: () => void; fail: (e: Error) => void }[] = [];
  const state = { mode: 'ok' as 'ok' | 'hang' | 'fail', calls: 0, stored: [] as string[] };
  const publisher: Publisher = {
    publish: (_topic, messages) => {
      state.calls++;
      if (state.mode === 'fail')
        return Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:19092'));
      if (state.mode === 'hang')
        return new Promise<void>((ack, fail) =>
          hung.push({
            ack: () => (state.stored.push(...messages.map((m) => String(m.key))), ack()),
            fail,
          }),
        );
      state.stored.push(...messages.map((m) => String(m.key)));
      return Promise.resolve();
    },
  };
  return { publisher, state, hung };
}

const msg = (k: string): OutgoingMessage => ({ key: k, value: Buffer.from(k) });
const tick = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One write's outcome and how long its caller waited. */
async function timedWrite(
  w: EventWriter,
  key: string,
): Promise<{ key: string; status: number; ms: number }> {
  const started = performance.now();
  const err = await w.write([msg(key)]).then(
    () => null,
    (e: unknown) => e,
  );
  if (err !== null && !(err instanceof LifecycleError)) throw err;
  return { key, status: err === null ? 200 : err.status, ms: performance.now() - started };
}

describe('event writer', () => {
  it('coalesces requests that arrive while a produce is in flight, and resolves each only after its own ack', async () => {
    const { publisher, sends } = gatedPublisher();
    const w = createEventWriter(publisher, 't');
    const done = new Set<string>();
    const a = w.write([msg('a')]).then(() => done.add('a'));
    await tick();
    expect(sends).toHaveLength(1);
    const b = w.write([msg('b1'), msg('b2')]).then(() => done.add('b'));
    const c = w.write([msg('c')]).then(() => done.add('c'));
    await tick();
    expect(sends).toHaveLength(1);
    expect(w.inFlight()).toBe(4);
    // Sent but not acknowledged: nobody is answered yet.
    await sleep(20);
    expect(done).toEqual(new Set());
    sends[0]!.ack();
    await a;
    expect(done).toEqual(new Set(['a']));
    await tick();
    expect(sends).toHaveLength(2);
    expect(sends[1]!.messages.map((m) => m.key)).toEqual(['b1', 'b2', 'c']);
    await sleep(20);
    expect(done).toEqual(new Set(['a']));
    sends[1]!.ack();
    await Promise.all([b, c]);
    expect(w.inFlight()).toBe(0);
  });

  it('during a hung Kafka longer than the probe interval, only the first request waits for the acknowledgement timeout; when Kafka is back requests succeed again', async () => {
    const kafka = outagePublisher();
    kafka.state.mode = 'hang';
    const timeoutMs = 1500;
    const w = createEventWriter(kafka.publisher, 't', {
      timeoutMs,
      probeIntervalMs: 100,
      probeTimeoutMs: 100,
    });
    // Requests admitted before anyone knows: they share the stuck produce's fate.
    const first = await Promise.all([
      timedWrite(w, 'first'),
      (await tick(), timedWrite(w, 'queued')),
    ]);
    expect(first.map((r) => r.status)).toEqual([503, 503]);
    expect(first[0]!.ms).toBeGreaterThanOrEqual(timeoutMs - 50);
    expect(w.circuit()).toBe('open');
    // Then an outage of more than twice the old one-second refusal window, with bursts of concurrent requests.
    const later: { key: string; status: number; ms: number }[] = [];
    const until = Date.now() + 2500;
    for (let i = 0; Date.now() < until; i++) {
      later.push(
        ...(await Promise.all(Array.from({ length: 5 }, (_, j) => timedWrite(w, `r${i}.${j}`)))),
      );
      await sleep(20);
    }
    expect(later.length).toBeGreaterThan(20);
    expect(later.filter((r) => r.status !== 503)).toEqual([]);
    // Every one answered well under the acknowledgement timeout (generous: a loaded machine).
    expect(later.filter((r) => r.ms >= timeoutMs / 2)).toEqual([]);
    // One produce (the stuck one) and, queued behind it, one probe: memory does not grow.
    expect(kafka.state.calls).toBe(1);
    expect(w.inFlight()).toBeLessThanOrEqual(2);
    expect(w.healthy()).toBe(false);

    // Kafka comes back: the stuck request fails (kafkajs's request timeout), new produces succeed.
    kafka.state.mode = 'ok';
    kafka.hung.shift()!.fail(new Error('Request produce(key: 0, version: 7) timed out'));
    const ok = await waitFor(
      async () => {
        const r = await timedWrite(w, 'after');
        return r.status === 200 ? r : false;
      },
      { timeout: 5000, interval: 20, message: 'a write succeeds after Kafka is back' },
    );
    expect(ok.ms).toBeLessThan(timeoutMs / 2);
    expect(w.circuit()).toBe('closed');
    const next = await Promise.all(Array.from({ length: 10 }, (_, i) => timedWrite(w, `n${i}`)));
    expect(next.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(w.healthy()).toBe(true);
    expect(kafka.state.stored).toEqual(
      expect.arrayContaining(['after', ...next.map((r) => r.key)]),
    );
  });

  it('after a failed produce refuses at once, lets one probe through per interval, and closes on the first success', async () => {
    const kafka = outagePublisher();
    kafka.state.mode = 'fail';
    const w = createEventWriter(kafka.publisher, 't', {
      timeoutMs: 5000,
      probeIntervalMs: 1000,
      probeTimeoutMs: 1000,
    });
    expect(await timedWrite(w, 'a')).toMatchObject({ status: 503 });
    expect(w.healthy()).toBe(false);
    const refused = await Promise.all(['b', 'c', 'd'].map((k) => timedWrite(w, k)));
    expect(refused.map((r) => r.status)).toEqual([503, 503, 503]);
    expect(kafka.state.calls).toBe(1);

    // After the interval: one of a burst probes (and fails again), the others are refused.
    await sleep(1100);
    expect(w.healthy()).toBe(true);
    await Promise.all(['e', 'f', 'g'].map((k) => timedWrite(w, k)));
    expect(kafka.state.calls).toBe(2);
    expect(w.circuit()).toBe('open');

    // Kafka is back: the next probe is answered with its acknowledgement and closes the circuit.
    kafka.state.mode = 'ok';
    expect((await timedWrite(w, 'h')).status).toBe(503);
    await sleep(1100);
    const burst = await Promise.all(['p1', 'p2', 'p3'].map((k) => timedWrite(w, k)));
    expect(burst.map((r) => r.status)).toEqual([200, 503, 503]);
    expect(kafka.state.calls).toBe(3);
    expect(kafka.state.stored).toEqual(['p1']);
    expect((await timedWrite(w, 'i')).status).toBe(200);
    expect(w.circuit()).toBe('closed');
  });

  it('a probe whose produce hangs is answered after probeTimeoutMs, blocks other probes while out, and its late success closes the circuit', async () => {
    const kafka = outagePublisher();
    kafka.state.mode = 'fail';
    const w = createEventWriter(kafka.publisher, 't', {
      timeoutMs: 10_000,
      probeIntervalMs: 50,
      probeTimeoutMs: 150,
    });
    await timedWrite(w, 'a');
    kafka.state.mode = 'hang';
    await sleep(80);
    const probe = await timedWrite(w, 'probe');
    expect(probe.status).toBe(503);
    expect(probe.ms).toBeGreaterThanOrEqual(140);
    expect(probe.ms).toBeLessThan(5000);
    await sleep(80);
    // The probe's produce is still out: no second probe, only refusals.
    const refused = await Promise.all(['b', 'c'].map((k) => timedWrite(w, k)));
    expect(refused.map((r) => r.status)).toEqual([503, 503]);
    expect(refused.every((r) => r.ms < 1000)).toBe(true);
    expect(kafka.state.calls).toBe(2);
    expect(w.healthy()).toBe(false);
    kafka.state.mode = 'ok';
    kafka.hung.shift()!.ack();
    await waitFor(() => w.circuit() === 'closed', { timeout: 2000, interval: 5 });
    expect((await timedWrite(w, 'd')).status).toBe(200);
    expect(kafka.state.stored).toEqual(['probe', 'd']);
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
    const sha256 = (k: string) => createHash('sha256').update(k).digest('base64');
    const store = parseWriteKeys([
      'web:wk_live_9f3Kq2',
      'ios:wk:colon:Zp71',
      'api:wk_srv_Qx81:server',
      'app:wk_x:server:client',
    ]);
    expect(store.lookup('wk_live_9f3Kq2')).toEqual({
      source: 'web',
      kind: 'client',
      digest: sha256('wk_live_9f3Kq2'),
    });
    expect(store.lookup('wk:colon:Zp71')).toMatchObject({ source: 'ios', kind: 'client' });
    expect(store.lookup('wk_srv_Qx81')).toMatchObject({ source: 'api', kind: 'server' });
    // A key ending in a kind's name is written with its own kind after it.
    expect(store.lookup('wk_x:server')).toMatchObject({ source: 'app', kind: 'client' });
    expect(store.kindOf(sha256('wk_srv_Qx81'))).toBe('server');
    expect(store.lookup('zzz')).toBeUndefined();
    // The whole table is digests; no trace of a plaintext key in the store's state.
    expect([...store.digests]).toEqual([
      [sha256('wk_live_9f3Kq2'), { source: 'web', kind: 'client' }],
      [sha256('wk:colon:Zp71'), { source: 'ios', kind: 'client' }],
      [sha256('wk_srv_Qx81'), { source: 'api', kind: 'server' }],
      [sha256('wk_x:server'), { source: 'app', kind: 'client' }],
    ]);
    const state = inspect(store, {
      depth: Infinity,
      showHidden: true,
      maxArrayLength: Infinity,
      maxStringLength: Infinity,
    });
    expect(state).toContain(sha256('wk_live_9f3Kq2'));
    for (const plain of ['wk_live_9f3Kq2', '9f3Kq2', 'wk:colon:Zp71', 'Zp71'])
      expect(state).not.toContain(plain);
    expect(JSON.stringify(Object.fromEntries(store.digests))).not.toMatch(/9f3Kq2|Zp71/);
    expect(presentedKey(`Basic ${Buffer.from('abc:').toString('base64')}`, undefined)).toBe('abc');
    expect(presentedKey('Bearer abc', undefined)).toBe('abc');
    expect(presentedKey(undefined, { writeKey: 'abc' })).toBe('abc');
    expect(presentedKey(undefined, {})).toBeUndefined();
    expect(() => parseWriteKeys(['nokey'])).toThrow(/source:key/);
    expect(() => parseWriteKeys(['web::server'])).toThrow(
      /source:key or source:key:client\|server/,
    );
  });
});
