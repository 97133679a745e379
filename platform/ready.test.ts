import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { isUnreachable, whenReady } from './ready.ts';

function capture() {
  const lines: { level: number; msg: string; attempt?: number }[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) },
  );
  return { logger, lines };
}

const refused = () =>
  Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });

describe('whenReady', () => {
  it('waits out unreachable attempts with a logged line each, then returns the value', async () => {
    const { logger, lines } = capture();
    let calls = 0;
    const value = await whenReady({
      what: 'Kafka',
      at: '127.0.0.1:1',
      logger,
      retry: { initialMs: 1, maxMs: 4 },
      waitable: isUnreachable,
      attempt: async () => {
        calls++;
        if (calls < 4) throw refused();
        return 'up';
      },
    });
    expect(value).toBe('up');
    expect(calls).toBe(4);
    const waiting = lines.filter((l) => l.msg.startsWith('Kafka does not answer'));
    expect(waiting.map((l) => l.attempt)).toEqual([1, 2, 3]);
    expect(lines.at(-1)!.msg).toBe('Kafka answers: starting');
  });

  it('stops at once on an error that waiting cannot mend', async () => {
    const { logger } = capture();
    let calls = 0;
    await expect(
      whenReady({
        what: 'ClickHouse',
        at: 'http://x',
        logger,
        retry: { initialMs: 1, maxMs: 1 },
        waitable: isUnreachable,
        attempt: async () => {
          calls++;
          throw new Error('Authentication failed: password is incorrect');
        },
      }),
    ).rejects.toThrow(/password/);
    expect(calls).toBe(1);
  });
});

describe('isUnreachable', () => {
  it('reads connection failures through kafkajs wrappers and causes', () => {
    expect(isUnreachable(refused())).toBe(true);
    const kafkajsConnection = Object.assign(new Error('Connection error: connect ECONNREFUSED'), {
      name: 'KafkaJSConnectionError',
    });
    expect(isUnreachable(kafkajsConnection)).toBe(true);
    // kafkajs gives up with a non-retriable wrapper around the last error.
    const gaveUp = Object.assign(new Error('Number of retries exceeded'), {
      name: 'KafkaJSNumberOfRetriesExceeded',
      retriable: false,
      originalError: kafkajsConnection,
    });
    expect(isUnreachable(gaveUp)).toBe(true);
    expect(isUnreachable(new Error('wrapped', { cause: refused() }))).toBe(true);
  });

  it('does not wait out refusals and bad input', () => {
    expect(isUnreachable(new Error('SASL authentication failed'))).toBe(false);
    expect(
      isUnreachable(
        Object.assign(new Error('Topic authorization failed'), { name: 'KafkaJSProtocolError' }),
      ),
    ).toBe(false);
    expect(isUnreachable(undefined)).toBe(false);
    expect(isUnreachable('ECONNREFUSED')).toBe(false);
  });
});
