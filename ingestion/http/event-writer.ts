// Writes accepted events to the events topic and resolves each request only once Kafka
// acknowledged its events (acks=all through the Publisher). Concurrent requests are
// coalesced: while one produce is in flight the next requests accumulate and go out
// together, so throughput follows Kafka's latency instead of paying one round trip per
// request. Memory is bounded: past `maxInFlightEvents` requests are refused at once.
//
// Kafka outages go through a circuit breaker. Closed: requests are written as above. A
// failed produce, or a request that waited `timeoutMs` for its acknowledgement, opens it:
// the requests still queued (not sent) are answered 503 at once, and so is every new one,
// without queueing behind the stuck produce. After `probeIntervalMs` the next request is let
// through as the one probe (half-open): its events are written, it waits at most
// `probeTimeoutMs`, and every other request is still refused while it is out. The first
// successful produce closes the circuit; a failed one opens it again.
import type { OutgoingMessage, Publisher } from '../../platform/bus.ts';
import { ErrorCodes, LifecycleError, errorMessage } from '../../platform/errors.ts';

export interface EventWriterOptions {
  /** Longest a request waits for Kafka before it is answered 503. */
  timeoutMs: number;
  /** Events accepted but not yet acknowledged, across all requests. */
  maxInFlightEvents: number;
  /** Largest number of messages in one produce request. */
  maxBatchMessages: number;
  /** While the circuit is open, one request probes Kafka at most this often; the others get 503 at once. */
  probeIntervalMs: number;
  /** Longest the probe request waits for its acknowledgement (its produce may take longer and still close the circuit). */
  probeTimeoutMs: number;
}

export const DEFAULT_WRITER_OPTIONS: EventWriterOptions = {
  timeoutMs: 3000,
  maxInFlightEvents: 100_000,
  maxBatchMessages: 5000,
  probeIntervalMs: 1000,
  probeTimeoutMs: 500,
};

interface Waiter {
  count: number;
  settled: boolean;
  /** The half-open circuit's one trial write. */
  probe: boolean;
  resolve(): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export interface WriterHooks {
  onFlush?(messages: number, seconds: number, ok: boolean): void;
  onInFlight?(events: number): void;
}

export interface EventWriter {
  write(messages: OutgoingMessage[]): Promise<void>;
  inFlight(): number;
  /**
   * False while the circuit is open and refusing (a recent failure, or a probe out); true
   * when closed, or when the next request would probe.
   */
  healthy(): boolean;
  /** closed: writing; open: refusing, probing Kafka with one request at a time. */
  circuit(): 'closed' | 'open';
  lastError(): string | null;
  /** Waits for every accepted event to be acknowledged or failed. */
  drain(): Promise<void>;
}

export function unavailable(message: string, retryAfterSeconds = 1): LifecycleError {
  return new LifecycleError(ErrorCodes.Unavailable, message, {
    retriable: true,
    status: 503,
    details: { retryAfterSeconds },
  });
}

export function createEventWriter(
  publisher: Publisher,
  topic: string,
  options: Partial<EventWriterOptions> = {},
  hooks: WriterHooks = {},
): EventWriter {
  const opts = { ...DEFAULT_WRITER_OPTIONS, ...options };
  let pending: { messages: OutgoingMessage[]; waiters: Waiter[] } = { messages: [], waiters: [] };
  let flushing = false;
  let scheduled = false;
  let inFlight = 0;
  let lastError: string | null = null;
  let idle: (() => void)[] = [];
  // The circuit: open since `openedAt` (0 when closed); `probing` while the probe's events are queued or being produced.
  let openedAt = 0;
  let probing = false;

  const setInFlight = (delta: number) => {
    inFlight += delta;
    hooks.onInFlight?.(inFlight);
    if (inFlight === 0) {
      const waiting = idle;
      idle = [];
      for (const w of waiting) w();
    }
  };

  const settle = (w: Waiter, err?: Error) => {
    if (w.settled) return;
    w.settled = true;
    clearTimeout(w.timer);
    if (err) w.reject(err);
    else w.resolve();
  };

  /** Opens (or re-opens) the circuit and answers every request that is queued but not sent: nothing of theirs reached Kafka. */
  const trip = (reason: string) => {
    lastError = reason;
    openedAt = Date.now();
    const dropped = pending;
    if (dropped.messages.length === 0) return;
    pending = { messages: [], waiters: [] };
    const e = unavailable(`events not stored: Kafka is not acknowledging (${reason}); retry later`);
    for (const w of dropped.waiters) {
      if (w.probe) probing = false;
      settle(w, e);
    }
    setInFlight(-dropped.messages.length);
  };

  const flush = async (): Promise<void> => {
    scheduled = false;
    if (flushing) return;
    flushing = true;
    try {
      while (pending.messages.length > 0) {
        let batch = pending;
        if (batch.messages.length > opts.maxBatchMessages) {
          // Split at a request boundary so every request's events share one outcome.
          let n = 0;
          let i = 0;
          while (
            i < batch.waiters.length &&
            (n === 0 || n + batch.waiters[i]!.count <= opts.maxBatchMessages)
          )
            n += batch.waiters[i++]!.count;
          pending = { messages: batch.messages.slice(n), waiters: batch.waiters.slice(i) };
          batch = { messages: batch.messages.slice(0, n), waiters: batch.waiters.slice(0, i) };
        } else {
          pending = { messages: [], waiters: [] };
        }
        const started = performance.now();
        const carriesProbe = batch.waiters.some((w) => w.probe);
        try {
          await publisher.publish(topic, batch.messages);
          lastError = null;
          openedAt = 0;
          hooks.onFlush?.(batch.messages.length, (performance.now() - started) / 1000, true);
          for (const w of batch.waiters) settle(w);
        } catch (err) {
          const reason = errorMessage(err);
          hooks.onFlush?.(batch.messages.length, (performance.now() - started) / 1000, false);
          const e = unavailable(
            `events not stored: Kafka did not acknowledge them (${reason}); retry later`,
          );
          for (const w of batch.waiters) settle(w, e);
          trip(reason);
        } finally {
          if (carriesProbe) probing = false;
          setInFlight(-batch.messages.length);
        }
      }
    } finally {
      flushing = false;
    }
  };

  const refusal = () =>
    unavailable(`Kafka is not acknowledging events (${lastError ?? 'timeout'}); retry later`);

  return {
    write(messages) {
      if (messages.length === 0) return Promise.resolve();
      let probe = false;
      if (openedAt !== 0) {
        // Open: one probe at a time, and not before the interval has passed since the last failure.
        if (probing || Date.now() - openedAt < opts.probeIntervalMs)
          return Promise.reject(refusal());
        probe = true;
      }
      if (inFlight + messages.length > opts.maxInFlightEvents) {
        return Promise.reject(
          unavailable('ingest is saturated: too many events waiting for Kafka; retry later'),
        );
      }
      if (probe) probing = true;
      setInFlight(messages.length);
      return new Promise<void>((resolve, reject) => {
        const waiter: Waiter = {
          count: messages.length,
          settled: false,
          probe,
          resolve,
          reject,
          // The events may still be written later; the client retries with the same
          // messageIds and consumers dedupe by event id, so nothing is lost or doubled.
          timer: probe
            ? // A probe's produce goes on after its answer; its outcome alone closes or re-opens the circuit.
              setTimeout(() => settle(waiter, refusal()), opts.probeTimeoutMs)
            : setTimeout(() => {
                settle(
                  waiter,
                  unavailable(`Kafka did not acknowledge within ${opts.timeoutMs} ms; retry later`),
                );
                // Requests of the same stuck produce time out one after the other: the first opens the circuit; the later ones must not drop a probe queued since.
                if (openedAt === 0) trip(`no acknowledgement within ${opts.timeoutMs} ms`);
              }, opts.timeoutMs),
        };
        for (const m of messages) pending.messages.push(m);
        pending.waiters.push(waiter);
        if (!flushing && !scheduled) {
          // One tick of lingering lets requests parsed in the same event-loop turn share a produce.
          scheduled = true;
          setImmediate(() => void flush());
        }
      });
    },
    inFlight: () => inFlight,
    // An instance taken out of a load balancer by its health check must come back to get the
    // probe that finds Kafka working again: healthy again once the next request would probe.
    healthy: () => openedAt === 0 || (!probing && Date.now() - openedAt >= opts.probeIntervalMs),
    circuit: () => (openedAt === 0 ? 'closed' : 'open'),
    lastError: () => lastError,
    drain: () => (inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => idle.push(r))),
  };
}
