// A process started before Kafka waits for it: the broker's address answers nothing at
// first (a deploy bringing everything up at once, a broker restarting), then a TCP relay to
// the stack's broker opens on that address, and waitForKafka returns once it answers.
import { createServer, connect, type Server, type Socket } from 'node:net';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { waitForKafka } from './kafka.ts';
import { freePort } from '../test/support/ports.ts';
import { readStackEnv } from '../test/support/stack-env.ts';

const stack = readStackEnv();
const sockets = new Set<Socket>();
let relay: Server | undefined;

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => (relay ? relay.close(r) : r(undefined)));
});

describe('waitForKafka', () => {
  it('waits while no broker answers, logging each attempt, and returns once one does', async () => {
    const port = await freePort();
    const lines: { msg: string; attempt?: number; at?: string }[] = [];
    const logger = pino(
      { level: 'info' },
      { write: (l: string) => void lines.push(JSON.parse(l)) },
    );
    const waiting = () => lines.filter((l) => l.msg.startsWith('Kafka does not answer'));
    let settled = false;
    const ready = waitForKafka({ brokers: [`127.0.0.1:${port}`], clientId: 'ready-test' }, logger, {
      initialMs: 100,
      maxMs: 400,
    }).finally(() => (settled = true));

    while (waiting().length < 3) await new Promise((r) => setTimeout(r, 50));
    expect(settled).toBe(false);
    expect(waiting()[0]!.at).toBe(`127.0.0.1:${port}`);

    relay = createServer((client) => {
      const upstream = connect(Number(stack.KAFKA_PORT), stack.STACK_HOST);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => sockets.delete(s));
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((r) => relay!.listen(port, '127.0.0.1', r));

    await ready;
    expect(lines.at(-1)!.msg).toBe('Kafka answers: starting');
  });
});
