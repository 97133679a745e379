// Invariant 1 across a Kafka broker restart: the engine and delivery run as their own
// processes against a private single-node KRaft broker (test/support/private-kafka.ts), over
// the fault tests' stream (once-per-user rules, delayed sends, a holdout, unsubscribes). The
// broker is restarted mid-stream twice, once with a controlled shutdown (SIGTERM) and once
// killed (SIGKILL), on the same log directory. After the run drains, every expected email is
// in the SMTP sink exactly once (by Message-ID), none missing, none unexpected.
import { afterEach, describe, expect, it } from 'vitest';
import { startPrivateKafka, type PrivateKafka } from '../support/private-kafka.ts';
import { createFaultRun, type FaultRun } from '../support/fault-run.ts';
import { sleep } from '../support/engine-harness.ts';

let kafka: PrivateKafka | undefined;
let run: FaultRun | undefined;

afterEach(async () => {
  await run?.close();
  run = undefined;
  await kafka?.close();
  kafka = undefined;
});

describe('Kafka broker restarted mid-stream', () => {
  it('every expected email exactly once, nothing lost, nothing unexpected', async () => {
    kafka = await startPrivateKafka();
    const r = (run = await createFaultRun({
      label: 'broker-restart',
      kafkaBrokers: kafka.brokers,
    }));
    r.startEngine();
    r.startDelivery();
    const producing = r.produce();
    // Awaited after the restarts; a failure is reported then, not as an unhandled rejection.
    producing.catch(() => undefined);
    const t0 = Date.now();
    const restarts: string[] = [];
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      await sleep(4000 + Math.floor(Math.random() * 3000));
      await kafka.stop(signal);
      const down = Date.now();
      await sleep(500);
      await kafka.restart();
      restarts.push(`${signal} at ${down - t0} ms, down ${Date.now() - down} ms`);
    }
    await producing;
    const stuck = await r.settle(240_000);
    const v = await r.verdict();
    console.info(
      `broker restart: ${r.events.length} events, ${restarts.length} restarts (${restarts.join('; ')}), ` +
        `${v.expected} expected emails (${v.holdouts} holdouts and ${v.unsubscribed} users unsubscribed get none), ${v.received} received, ` +
        `${v.distinct} distinct; missing ${v.missing.length}, unexpected ${v.unexpected.length}, duplicated ${v.duplicated.length}; ` +
        `sends topic: missing ${v.sends.missing.length}, unexpected ${v.sends.unexpected.length}, differing ${v.sends.differing.length}, duplicate records ${v.sends.duplicateRecords}; ` +
        `${stuck ?? 'engine drained'} (logs in ${r.logDir})`,
    );
    expect(stuck).toBeNull();
    expect(v.expected).toBeGreaterThan(200);
    expect(v.missing, 'expected emails that never arrived').toEqual([]);
    expect(v.unexpected, 'emails the reference does not have (holdout, unsubscribed)').toEqual([]);
    expect(v.duplicated, 'emails that arrived more than once').toEqual([]);
    expect(v.sends.missing).toEqual([]);
    expect(v.sends.unexpected).toEqual([]);
    expect(v.sends.differing).toEqual([]);
  }, 500_000);
});
