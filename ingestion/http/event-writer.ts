// Writes accepted events to the events topic and resolves each request only once Kafka
// acknowledged its events (acks=all through the Publisher). Concurrent requests are
// coalesced: while one produce is in flight the next requests accumulate and go out
// together, so throughput follows Kafka's latency instead of paying one round trip per
// request. Memory is bounded: past `maxInFlightEvents`, or while a recent produce failed,
// requests are refused at once with 503 rather than queued.
import type { OutgoingMessage, Publisher } from '../../platform/bus.ts';
import { ErrorCodes, LifecycleError, errorMessage } from '../../platform/errors.ts';

export interface EventWriterOptions {
  /** Longest a request waits for Kafka before it is answered 503. */
  timeoutMs: number;
  /** Events accepted but not yet acknowledged, across all requests. */
  maxInFlightEvents: number;
  /** Largest number of messages in one produce request. */
  maxBatchMessages: number;
  /** After a failed or timed-out produce, refuse new requests for this long. */
  failFastMs: number;
}

export const DEFAULT_WRITER_OPTIONS: EventWriterOptions = {
  timeoutMs: 3000,
  maxInFlightEvents: 100_000,
  maxBatchMessages: 5000,
  failFastMs: 1000,
};

interface Waiter {
  count: number;
  settled: boolean;
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
  /** False while produces fail or time out. */
  healthy(): boolean;
  lastError(): string | null;
  /** Waits for every accepted event to be acknowledged or failed. */
  drain(): Promise<void>;
}

export function unavailable(message: string, retryAfterSeconds = 1): LifecycleError {
  return new LifecycleError(ErrorCodes.Unavailable, message, { retriable: true, status: 503, details: { retryAfterSeconds } });
}

export function createEventWriter(publisher: Publisher, topic: string, options: Partial<EventWriterOptions> = {}, hooks: WriterHooks = {}): EventWriter {
  const opts = { ...DEFAULT_WRITER_OPTIONS, ...options };
  let pending: { messages: OutgoingMessage[]; waiters: Waiter[] } = { messages: [], waiters: [] };
  let flushing = false;
  let scheduled = false;
  let inFlight = 0;
  let failingUntil = 0;
  let lastError: string | null = null;
  let idle: (() => void)[] = [];

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
          while (i < batch.waiters.length && (n === 0 || n + batch.waiters[i]!.count <= opts.maxBatchMessages)) n += batch.waiters[i++]!.count;
          pending = { messages: batch.messages.slice(n), waiters: batch.waiters.slice(i) };
          batch = { messages: batch.messages.slice(0, n), waiters: batch.waiters.slice(0, i) };
        } else {
          pending = { messages: [], waiters: [] };
        }
        const started = performance.now();
        try {
          await publisher.publish(topic, batch.messages);
          lastError = null;
          hooks.onFlush?.(batch.messages.length, (performance.now() - started) / 1000, true);
          for (const w of batch.waiters) settle(w);
        } catch (err) {
          lastError = errorMessage(err);
          failingUntil = Date.now() + opts.failFastMs;
          hooks.onFlush?.(batch.messages.length, (performance.now() - started) / 1000, false);
          const e = unavailable(`events not stored: Kafka did not acknowledge them (${lastError}); retry later`);
          for (const w of batch.waiters) settle(w, e);
        } finally {
          setInFlight(-batch.messages.length);
        }
      }
    } finally {
      flushing = false;
    }
  };

  return {
    write(messages) {
      if (messages.length === 0) return Promise.resolve();
      if (Date.now() < failingUntil) {
        return Promise.reject(unavailable(`Kafka is not acknowledging events (${lastError ?? 'timeout'}); retry later`));
      }
      if (inFlight + messages.length > opts.maxInFlightEvents) {
        return Promise.reject(unavailable('ingest is saturated: too many events waiting for Kafka; retry later'));
      }
      setInFlight(messages.length);
      return new Promise<void>((resolve, reject) => {
        const waiter: Waiter = {
          count: messages.length,
          settled: false,
          resolve,
          reject,
          timer: setTimeout(() => {
            // The events may still be written later; the client retries with the same
            // messageIds and consumers dedupe by event id, so nothing is lost or doubled.
            failingUntil = Date.now() + opts.failFastMs;
            lastError = `no acknowledgement within ${opts.timeoutMs} ms`;
            settle(waiter, unavailable(`Kafka did not acknowledge within ${opts.timeoutMs} ms; retry later`));
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
    // Time-based only: an instance taken out of a load balancer by its health check must come back to get the traffic that proves Kafka works again.
    healthy: () => Date.now() >= failingUntil,
    lastError: () => lastError,
    drain: () => (inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => idle.push(r))),
  };
}
