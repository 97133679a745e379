// A TCP proxy between the product and a service (here: delivery and the SMTP relay) whose
// behaviour a fault test switches at run time:
//   pass       bytes go through unchanged;
//   slow       every chunk, both ways, waits `slowMs` before it is passed on;
//   drop       open connections are reset, and new ones are reset after a random short
//              while (some before the greeting, some in the middle of a message);
//   blackhole  connections are accepted and nothing ever comes back: bytes in either
//              direction are swallowed, so the client waits until its own timeouts. A
//              connection that was blackholed stays so (as behind a dead route); only
//              connections opened after the mode changes back get through.
import { createServer, connect, type Server, type Socket } from 'node:net';

export type ProxyMode = 'pass' | 'slow' | 'drop' | 'blackhole';

export interface TcpProxy {
  readonly port: number;
  mode(): ProxyMode;
  setMode(mode: ProxyMode): void;
  /** Connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

export interface TcpProxyOptions {
  targetHost: string;
  targetPort: number;
  /** Delay of each chunk in `slow` mode. */
  slowMs?: number;
  /** Longest life of a connection in `drop` mode. */
  dropWithinMs?: number;
  /** Random numbers in [0, 1): the fault test's seeded generator. */
  random?: () => number;
}

interface Pair {
  client: Socket;
  upstream: Socket;
  blackholed: boolean;
}

export async function startTcpProxy(o: TcpProxyOptions): Promise<TcpProxy> {
  let mode: ProxyMode = 'pass';
  let accepted = 0;
  const random = o.random ?? Math.random;
  const slowMs = o.slowMs ?? 1500;
  const dropWithinMs = o.dropWithinMs ?? 800;
  const pairs = new Set<Pair>();

  const reset = (p: Pair) => {
    p.client.resetAndDestroy();
    p.upstream.destroy();
  };
  const dropLater = (p: Pair) => {
    setTimeout(() => reset(p), Math.floor(random() * dropWithinMs)).unref();
  };

  // Passes `from`'s chunks to `to` as the mode at the time of each chunk says, in order: a
  // chunk is never passed on before one that arrived earlier and is still being delayed.
  const forward = (p: Pair, from: Socket, to: Socket) => {
    let releaseAt = 0;
    const later = (fn: () => void) => {
      const now = Date.now();
      releaseAt = Math.max(now + (mode === 'slow' ? slowMs : 0), releaseAt);
      if (releaseAt <= now) fn();
      else setTimeout(fn, releaseAt - now).unref();
    };
    from.on('data', (chunk: Buffer) => {
      if (mode === 'blackhole') p.blackholed = true;
      if (p.blackholed) return;
      later(() => {
        if (!to.destroyed) to.write(chunk);
      });
    });
    from.on('end', () => {
      if (!p.blackholed) later(() => to.end());
    });
  };

  const server: Server = createServer((client) => {
    accepted++;
    const upstream = connect(o.targetPort, o.targetHost);
    const pair: Pair = { client, upstream, blackholed: mode === 'blackhole' };
    pairs.add(pair);
    const gone = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', gone);
    upstream.on('error', gone);
    client.on('close', gone);
    upstream.on('close', gone);
    forward(pair, client, upstream);
    forward(pair, upstream, client);
    if (mode === 'drop') dropLater(pair);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    mode: () => mode,
    setMode(next) {
      mode = next;
      if (next === 'drop') for (const p of pairs) dropLater(p);
      if (next === 'blackhole') for (const p of pairs) p.blackholed = true;
    },
    connections: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const p of pairs) reset(p);
        server.close(() => resolve());
      }),
  };
}
