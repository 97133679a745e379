// The chaos suite's TCP proxy, against an echo server: each mode does what the fault table
// of test/chaos/README.md says.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';

let echo: Server;
let echoPort = 0;
let proxy: TcpProxy;

beforeAll(async () => {
  echo = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  echoPort = (echo.address() as { port: number }).port;
  proxy = await startTcpProxy({
    targetHost: '127.0.0.1',
    targetPort: echoPort,
    slowMs: 400,
    dropWithinMs: 100,
  });
});

afterAll(async () => {
  await proxy.close();
  await new Promise<void>((r) => echo.close(() => r()));
});

function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(proxy.port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Writes `text` and resolves to what came back within `ms` and whether the socket was reset. */
async function roundTrip(s: Socket, text: string, ms: number) {
  let got = '';
  let reset = false;
  s.on('data', (d) => (got += d.toString()));
  s.on('error', () => (reset = true));
  s.on('close', () => (reset = true));
  const t0 = Date.now();
  s.write(text);
  while (Date.now() - t0 < ms && got.length < text.length && !reset)
    await new Promise((r) => setTimeout(r, 10));
  return { got, reset, ms: Date.now() - t0 };
}

describe('chaos TCP proxy', () => {
  it('passes bytes through unchanged', async () => {
    proxy.setMode('pass');
    const s = await open();
    const r = await roundTrip(s, 'EHLO chaos\r\n', 2000);
    expect(r.got).toBe('EHLO chaos\r\n');
    expect(r.ms).toBeLessThan(300);
    s.destroy();
  });

  it('slow: delays every chunk both ways, in order', async () => {
    proxy.setMode('slow');
    const s = await open();
    const r = await roundTrip(s, 'MAIL FROM:<a@example.com>\r\n', 3000);
    expect(r.got).toBe('MAIL FROM:<a@example.com>\r\n');
    expect(r.ms).toBeGreaterThanOrEqual(750);
    proxy.setMode('pass');
    s.destroy();
  });

  it('drop: resets open and new connections', async () => {
    proxy.setMode('pass');
    const before = await open();
    const closed = (s: Socket) =>
      new Promise<boolean>((resolve) => {
        s.on('error', () => undefined);
        s.once('close', () => resolve(true));
        setTimeout(() => resolve(false), 1000).unref();
      });
    const beforeClosed = closed(before);
    proxy.setMode('drop');
    const after = await open();
    const afterClosed = closed(after);
    expect(await beforeClosed).toBe(true);
    expect(await afterClosed).toBe(true);
    proxy.setMode('pass');
  });

  it('blackhole: nothing comes back, and a blackholed connection stays dead', async () => {
    proxy.setMode('blackhole');
    const s = await open();
    const r = await roundTrip(s, 'DATA\r\n', 600);
    expect(r.got).toBe('');
    expect(r.reset).toBe(false);
    proxy.setMode('pass');
    const again = await roundTrip(s, 'more\r\n', 400);
    expect(again.got).toBe('');
    const fresh = await open();
    expect((await roundTrip(fresh, 'ok\r\n', 1000)).got).toBe('ok\r\n');
    s.destroy();
    fresh.destroy();
  });
});
