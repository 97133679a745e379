// Benchmark: what `appendfsync always` costs against `everysec` on this machine. Two private
// redis-servers (AOF in a temporary folder each, one per setting) take the same workload in
// the same run, in alternating rounds, and the medians are compared:
// - engine: fenced state writes of a batch of users (the engine's WRITE_USERS script through
//   the real state store, ~600-byte states), 6 partitions writing at once, as the engine's
//   phase 5 does;
// - delivery: a send's claim cycle (claim, mark sending, finish as sent) through the real
//   claim store, 16 sends in flight, as a delivery worker does around each provider call.
// Under `always` every write command's reply waits for an fsync of the AOF, but Redis fsyncs
// once per event-loop turn for every client served in that turn, so pipelined and
// concurrent writes share fsyncs. The baseline is `everysec`; the ratio is always/everysec.
// Run alone: npx tsx bench/redis-fsync.ts (or npm run bench -- redis-fsync).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../platform/logger.ts';
import { createRedis, type RedisDeps } from '../platform/redis.ts';
import { createRedisStateStore } from '../engine/runtime/redis-state.ts';
import { createRedisClaimStore } from '../delivery/policy/claims.ts';
import { startPrivateRedis } from '../test/support/private-redis.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROUND_MS = 3_000;
const ROUNDS = 3;
const PARTITIONS = 6;
const USERS_PER_BATCH = 100;
const CLAIMS_IN_FLIGHT = 16;
const STATE = JSON.stringify({
  user: { email: 'someone@example.com', plan: 'trial', locale: 'en', timezone: 'Europe/Berlin' },
  stats: Object.fromEntries(
    [
      'export',
      'share',
      'search',
      'invite',
      'dashboard',
      'page',
      'order_completed',
      'app_opened',
    ].map((t) => [t, { count: 3, first: 1_700_000_000_000, last: 1_700_000_100_000 }]),
  ),
  rules: { welcome: { fired: 1, last: 1_700_000_000_000 } },
  recent: ['ev-1', 'ev-2', 'ev-3'],
});

interface Server {
  appendfsync: string;
  deps: RedisDeps;
  stop(): Promise<void>;
}

async function startServer(appendfsync: 'always' | 'everysec'): Promise<Server> {
  const server = await startPrivateRedis({ appendfsync });
  const deps = createRedis({ url: server.url, keyPrefix: 'bench:' }, silentLogger());
  return {
    appendfsync,
    deps,
    async stop() {
      deps.redis.disconnect();
      await server.stop();
    },
  };
}

/** Runs `fn` with `concurrency` loops for `ms`; rate and latency percentiles of its calls. */
async function loop(
  ms: number,
  concurrency: number,
  fn: (lane: number, i: number) => Promise<void>,
) {
  const lat: number[] = [];
  let i = 0;
  const start = performance.now();
  const deadline = start + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, lane) => {
      while (performance.now() < deadline) {
        const t = performance.now();
        await fn(lane, i++);
        lat.push(performance.now() - t);
      }
    }),
  );
  const secs = (performance.now() - start) / 1000;
  lat.sort((a, b) => a - b);
  const q = (p: number) =>
    Math.round((lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] ?? 0) * 100) / 100;
  return { perSec: lat.length / secs, p50Ms: q(0.5), p99Ms: q(0.99) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function engineRound(s: Server, round: number) {
  const store = createRedisStateStore(s.deps, { eventsTopic: 'bench.events' });
  const epochs = await Promise.all(Array.from({ length: PARTITIONS }, (_, p) => store.acquire(p)));
  const offsets = new Array<number>(PARTITIONS).fill(0);
  const r = await loop(ROUND_MS, PARTITIONS, async (p) => {
    const writes = Array.from({ length: USERS_PER_BATCH }, (_, k) => ({
      userId: `u${round}-${p}-${k}`,
      state: STATE,
      offset: String(offsets[p]! + k),
      timerIds: [],
    }));
    offsets[p]! += USERS_PER_BATCH;
    const w = await store.write(p, epochs[p]!, writes);
    if (w.refused.length > 0) throw new Error('write refused');
  });
  return {
    batchesPerSec: r.perSec,
    usersPerSec: r.perSec * USERS_PER_BATCH,
    batchP50Ms: r.p50Ms,
    batchP99Ms: r.p99Ms,
  };
}

async function claimRound(s: Server, round: number) {
  const claims = createRedisClaimStore(s.deps);
  const r = await loop(ROUND_MS, CLAIMS_IN_FLIGHT, async (_lane, i) => {
    const ref = { userId: `c${i % 5000}`, sendId: `s${round}-${i}`, channel: 'email' as const };
    const c = await claims.claim(ref, 'bench', Date.now(), 30_000, null);
    if (c.kind !== 'new') throw new Error(`claim ${c.kind}`);
    await claims.markSending(ref, 'bench');
    await claims.finish(ref, 'bench', 'sent', null, 'bench', 1);
  });
  return { claimsPerSec: r.perSec, cycleP50Ms: r.p50Ms, cycleP99Ms: r.p99Ms };
}

export async function run() {
  const servers = await Promise.all([startServer('everysec'), startServer('always')]);
  try {
    const rounds: Record<
      string,
      {
        engine: Awaited<ReturnType<typeof engineRound>>[];
        claims: Awaited<ReturnType<typeof claimRound>>[];
      }
    > = { everysec: { engine: [], claims: [] }, always: { engine: [], claims: [] } };
    for (let round = 0; round < ROUNDS; round++) {
      // Alternating, so a burst of load elsewhere on the machine lands on both.
      for (const s of round % 2 === 0 ? servers : [...servers].reverse()) {
        rounds[s.appendfsync]!.engine.push(await engineRound(s, round));
        rounds[s.appendfsync]!.claims.push(await claimRound(s, round));
      }
    }
    const summary = (k: 'everysec' | 'always') => {
      const e = rounds[k]!.engine;
      const c = rounds[k]!.claims;
      return {
        engineUsersPerSec: Math.round(median(e.map((x) => x.usersPerSec))),
        engineBatchP50Ms: median(e.map((x) => x.batchP50Ms)),
        engineBatchP99Ms: median(e.map((x) => x.batchP99Ms)),
        claimCyclesPerSec: Math.round(median(c.map((x) => x.claimsPerSec))),
        claimCycleP50Ms: median(c.map((x) => x.cycleP50Ms)),
        claimCycleP99Ms: median(c.map((x) => x.cycleP99Ms)),
      };
    };
    const everysec = summary('everysec');
    const always = summary('always');
    const out = {
      at: new Date().toISOString(),
      workload: {
        partitions: PARTITIONS,
        usersPerBatch: USERS_PER_BATCH,
        stateBytes: STATE.length,
        claimsInFlight: CLAIMS_IN_FLIGHT,
        roundMs: ROUND_MS,
        rounds: ROUNDS,
      },
      everysec,
      always,
      ratio: {
        engineUsersPerSec:
          Math.round((always.engineUsersPerSec / everysec.engineUsersPerSec) * 100) / 100,
        claimCyclesPerSec:
          Math.round((always.claimCyclesPerSec / everysec.claimCyclesPerSec) * 100) / 100,
      },
    };
    await mkdir(path.join(here, 'results'), { recursive: true });
    await writeFile(path.join(here, 'results', 'redis-fsync.json'), JSON.stringify(out, null, 2));
    for (const [k, v] of [
      ['everysec', everysec],
      ['always', always],
    ] as const) {
      console.log(
        `${k.padEnd(8)}: state writes ${v.engineUsersPerSec} users/s (batch of ${USERS_PER_BATCH}: p50 ${v.engineBatchP50Ms} ms, p99 ${v.engineBatchP99Ms} ms); ` +
          `claim cycles ${v.claimCyclesPerSec}/s (p50 ${v.claimCycleP50Ms} ms, p99 ${v.claimCycleP99Ms} ms)`,
      );
    }
    console.log(
      `always/everysec: state writes ${out.ratio.engineUsersPerSec}, claim cycles ${out.ratio.claimCyclesPerSec}`,
    );
    return out;
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
