// The fault injector: at seeded random moments it SIGKILLs and restarts the product's
// processes, restarts shared services through `scripts/stack`, degrades the SMTP relay
// through the TCP proxy and puts poison records on the input topics. Service faults run one
// at a time (each waits until the service answers again); process kills may land while a
// service is still recovering.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { between, pick, sleep, stream } from './random.ts';
import type { Supervisor } from './processes.ts';
import type { ProxyMode, TcpProxy } from './tcp-proxy.ts';

const exec = promisify(execFile);

export const FAULT_KINDS = [
  'kill ingest',
  'kill engine',
  'kill delivery',
  'kill sink',
  'kill scheduler',
  'restart kafka',
  'crash redis',
  'restart connect',
  'stop clickhouse',
  'smtp slow',
  'smtp drop',
  'smtp blackhole',
  'poison',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface FaultLog {
  kind: FaultKind;
  detail: string;
  at: number;
  ms: number;
}

export interface InjectorOptions {
  seed: number;
  root: string;
  supervisor: Supervisor;
  proxy: TcpProxy;
  /** How long ClickHouse stays stopped. */
  clickhouseDownMs: number;
  /** How long the SMTP relay stays slow, dropping or blackholed. */
  smtpFaultMs: [number, number];
  /** Pause between two faults. */
  gapMs: [number, number];
  /** Puts one poison record on every input topic; returns how many. */
  poison: (n: number) => Promise<number>;
  /** Called after Kafka Connect restarted (the standalone worker forgets its connectors). */
  afterConnectRestart: () => Promise<void>;
  log: (line: string) => void;
}

export interface Injector {
  readonly done: FaultLog[];
  count(kind: FaultKind): number;
  /** Runs `plan` (fault kinds in order). */
  run(plan: FaultKind[]): Promise<void>;
}

/** Every kind once, in a random order, plus `extraKills` process kills. */
export function shortPlan(seed: number, extraKills: number): FaultKind[] {
  const rnd = stream(seed, 'plan');
  const plan: FaultKind[] = [...FAULT_KINDS];
  const kills = FAULT_KINDS.filter((k) => k.startsWith('kill '));
  for (let i = 0; i < extraKills; i++) plan.push(pick(rnd, kills));
  for (let i = plan.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [plan[i], plan[j]] = [plan[j]!, plan[i]!];
  }
  return plan;
}

/**
 * `total` faults (at least one of every kind); mostly process kills and relay faults,
 * which are quick, with a service fault about every tenth.
 */
export function longPlan(seed: number, total: number): FaultKind[] {
  const rnd = stream(seed, 'plan');
  const plan = shortPlan(seed, 0);
  if (total < plan.length) throw new Error(`a long run needs at least ${plan.length} faults`);
  const quick = FAULT_KINDS.filter((k) => k.startsWith('kill ') || k.startsWith('smtp '));
  const slow = FAULT_KINDS.filter((k) => !k.startsWith('kill ') && !k.startsWith('smtp '));
  while (plan.length < total) plan.push(rnd() < 0.1 ? pick(rnd, slow) : pick(rnd, quick));
  return plan;
}

async function stack(root: string, command: string, service: string): Promise<void> {
  await exec('bash', [path.join(root, 'scripts/stack'), command, service], {
    timeout: 300_000,
  });
}

export function createInjector(o: InjectorOptions): Injector {
  const rnd = stream(o.seed, 'faults');
  const done: FaultLog[] = [];
  let poisonRound = 0;

  async function killRole(role: 'ingest' | 'engine' | 'delivery' | 'sink' | 'scheduler') {
    const m = pick(rnd, o.supervisor.byRole(role));
    await m.kill();
    const pause = between(rnd, 200, 2500);
    await sleep(pause);
    m.start();
    return `${m.name}, restarted after ${pause} ms`;
  }

  async function smtp(mode: ProxyMode) {
    const ms = between(rnd, o.smtpFaultMs[0], o.smtpFaultMs[1]);
    o.proxy.setMode(mode);
    await sleep(ms);
    o.proxy.setMode('pass');
    return `${ms} ms`;
  }

  async function one(kind: FaultKind): Promise<string> {
    switch (kind) {
      case 'kill ingest':
        return killRole('ingest');
      case 'kill engine':
        return killRole('engine');
      case 'kill delivery':
        return killRole('delivery');
      case 'kill sink':
        return killRole('sink');
      case 'kill scheduler':
        return killRole('scheduler');
      case 'restart kafka':
        await stack(o.root, 'restart', 'kafka');
        return 'SIGTERM, started again';
      case 'crash redis':
        await stack(o.root, 'kill', 'redis');
        await sleep(between(rnd, 200, 1500));
        await stack(o.root, 'start', 'redis');
        return 'SIGKILL, started again';
      case 'restart connect':
        await stack(o.root, 'restart', 'connect');
        await o.afterConnectRestart();
        return 'SIGTERM, started again, connector created again';
      case 'stop clickhouse':
        await stack(o.root, 'stop', 'clickhouse');
        await sleep(o.clickhouseDownMs);
        await stack(o.root, 'start', 'clickhouse');
        return `down ${o.clickhouseDownMs} ms`;
      case 'smtp slow':
        return smtp('slow');
      case 'smtp drop':
        return smtp('drop');
      case 'smtp blackhole':
        return smtp('blackhole');
      case 'poison':
        return `${await o.poison(++poisonRound)} records`;
    }
  }

  return {
    done,
    count: (kind) => done.filter((f) => f.kind === kind).length,
    async run(plan) {
      for (const kind of plan) {
        await sleep(between(rnd, o.gapMs[0], o.gapMs[1]));
        const at = Date.now();
        const detail = await one(kind);
        done.push({ kind, detail, at, ms: Date.now() - at });
        o.log(`fault ${done.length}/${plan.length}: ${kind} (${detail})`);
      }
    },
  };
}
