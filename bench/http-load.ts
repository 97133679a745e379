// The HTTP load driver of the API benchmarks (ingest-http, send-api). The servers under test
// run in a child process started from the benchmark's own file (`<file> --serve ...`), so
// their CPU time is measured apart from the load generator's; the parent drives autocannon at
// them and asks the child for its CPU time around each phase, because CPU per request or per
// event is the number that stays comparable on a noisy machine.
//
// The child and the parent speak JSON lines: the child's first line on stdout says where it
// listens (whatever the benchmark needs); each `cpu` line on its stdin is answered with
// `{"cpuMicros": n}`; the end of its stdin closes it.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';

/** The part of autocannon's API used here (the package ships no types). */
export interface CannonOptions {
  url: string;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  connections?: number;
  duration?: number;
  /** Replaces `[<id>]` in headers and body with a new id per request. */
  idReplacement?: boolean;
}

export interface CannonResult {
  '2xx': number;
  non2xx: number;
  errors: number;
  timeouts: number;
  duration: number;
  latency: { p50: number; p99: number };
}

export const autocannon = createRequire(import.meta.url)('autocannon') as (
  opts: CannonOptions,
) => Promise<CannonResult>;

/** CPU time (user + system) of this process so far, in microseconds. */
export const cpuMicros = (): number => {
  const c = process.cpuUsage();
  return c.user + c.system;
};

/** One measured load on one route. */
export interface LoadPhase {
  name: string;
  requestsPerSec: number;
  /** Events answered per second (0 for a route whose requests carry none). */
  eventsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  ok: number;
  non2xx: number;
  errors: number;
  /** CPU time of the server process per answered event, or per request when requests carry no events. */
  serverCpuMicrosPerUnit: number;
  /** Server CPU time / wall time of the phase (1 = one core busy all the time). */
  serverCores: number;
}

/**
 * Drives `opts` (its `connections` and `duration` included) and reads the server's CPU time
 * before and after. `eventsPerRequest`: events each answered request carries (0: none).
 */
export async function measure(
  name: string,
  opts: CannonOptions & { connections: number; duration: number },
  serverCpu: () => Promise<number>,
  eventsPerRequest = 0,
): Promise<LoadPhase> {
  const cpu0 = await serverCpu();
  const r = await autocannon(opts);
  const cpu = (await serverCpu()) - cpu0;
  const ok = r['2xx'];
  const seconds = r.duration;
  return {
    name,
    requestsPerSec: Math.round(ok / seconds),
    eventsPerSec: Math.round((ok * eventsPerRequest) / seconds),
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    ok,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    serverCpuMicrosPerUnit: Number(
      (cpu / Math.max(1, ok * Math.max(1, eventsPerRequest))).toFixed(1),
    ),
    serverCores: Number((cpu / 1e6 / seconds).toFixed(2)),
  };
}

export interface LoadServer<Ready> {
  /** What the child's first line said (its URLs, a key). */
  ready: Ready;
  /** The child's CPU time so far, in microseconds (its cluster workers' included). */
  serverCpu(): Promise<number>;
  /** Ends the child's stdin, which closes it, and waits for it to exit. */
  close(): Promise<void>;
}

/** Parent side: starts `file` with `args` in a child (under tsx) and waits for its first line. */
export async function startLoadServer<Ready>(
  file: string,
  args: readonly string[],
): Promise<LoadServer<Ready>> {
  const child = spawn(process.execPath, ['--import', 'tsx', file, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  let waiting: ((line: string) => void) | null = null;
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      // Anything else a library prints is not the protocol.
      if (!line.startsWith('{')) continue;
      if (waiting) {
        const w = waiting;
        waiting = null;
        w(line);
      } else lines.push(line);
    }
  });
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  const nextLine = () =>
    Promise.race([
      new Promise<string>((resolve) => {
        const queued = lines.shift();
        if (queued !== undefined) return resolve(queued);
        waiting = resolve;
      }),
      exited.then((code) => Promise.reject(new Error(`bench server exited with ${code}`))),
    ]);
  const ready = JSON.parse(await nextLine()) as Ready;
  return {
    ready,
    serverCpu: async () => {
      child.stdin.write('cpu\n');
      return (JSON.parse(await nextLine()) as { cpuMicros: number }).cpuMicros;
    },
    close: async () => {
      child.stdin.end();
      await exited;
    },
  };
}

/**
 * Child side: prints `ready` as the first line, answers each `cpu` line with `cpu()` (default:
 * this process's CPU time), and when stdin ends runs `close` and exits.
 */
export function serveLoad(
  ready: object,
  opts: { close(): Promise<void>; cpu?: () => Promise<number> },
): void {
  const cpu = opts.cpu ?? (async () => cpuMicros());
  process.stdout.write(`${JSON.stringify(ready)}\n`);
  process.stdin.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n'))
      if (line === 'cpu')
        void cpu().then((c) => process.stdout.write(`${JSON.stringify({ cpuMicros: c })}\n`));
  });
  process.stdin.on('end', () => {
    void opts.close().then(() => process.exit(0));
  });
}
