// `lifecycle run ingest` with LC_INGEST_WORKERS=2 as a real process on the stack: two worker
// processes serve the one port, a killed worker is replaced while requests keep flowing,
// every acknowledged event is on Kafka, /metrics adds the workers up, and SIGTERM drains
// and stops them all.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { eventCodec } from '../../platform/avro.ts';
import { topics } from '../../platform/contracts.ts';
import { isolate } from '../../test/support/isolation.ts';
import { consume, testKafka } from '../../test/support/kafka.ts';
import { REPO_ROOT } from '../../test/support/stack-env.ts';
import { waitFor } from '../../test/support/wait.ts';
import { freePort } from '../../test/support/ports.ts';

const workersOf = (pid: number): number[] => {
  try {
    // Only the ingest workers (tsx keeps a compiler process of its own too).
    return execFileSync('pgrep', ['-P', String(pid), '-f', 'ingestion/http/worker.ts'], {
      encoding: 'utf8',
    })
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
};

let child: ChildProcess | undefined;
afterAll(() => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
});

describe('ingest in two worker processes', () => {
  it('serves one port from both, survives a killed worker, adds up metrics and stops cleanly', async () => {
    const iso = isolate('ingest-cluster');
    const [port, metricsPort] = [await freePort(), await freePort()];
    const url = `http://127.0.0.1:${port}`;
    let output = '';
    // The node process itself (bin/lifecycle execs node), so its children are the workers.
    child = spawn(
      process.execPath,
      ['--import', 'tsx/esm', path.join(REPO_ROOT, 'bin/cli.ts'), 'run', 'ingest'],
      {
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          ...iso.env,
          LC_INGEST_PORT: String(port),
          LC_METRICS_PORT: String(metricsPort),
          LC_INGEST_WORKERS: '2',
          LC_LOG_LEVEL: 'info',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    await waitFor(async () => (await fetch(`${url}/health`).catch(() => null))?.ok, {
      timeout: 90_000,
      message: 'ingest did not become healthy',
    }).catch((err: Error) => {
      throw new Error(`${err.message}\n${output.slice(-3000)}`);
    });
    const workers = workersOf(child.pid!);
    expect(workers).toHaveLength(2);

    const auth = `Basic ${Buffer.from('dev-write-key:').toString('base64')}`;
    const track = async (i: number) => {
      // A new connection each time, so the workers share the requests.
      // A connection handed to the worker just killed gets no answer: the client times out (and a Segment SDK would retry).
      const res = await fetch(`${url}/v1/track`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: auth, connection: 'close' },
        body: JSON.stringify({
          userId: `u${i % 7}`,
          messageId: `${iso.id}-${i}`,
          event: 'feature_used',
        }),
        signal: AbortSignal.timeout(5000),
      }).catch(() => null);
      return res?.status ?? 0;
    };
    const acknowledged: number[] = [];
    for (let i = 0; i < 30; i++) if ((await track(i)) === 200) acknowledged.push(i);
    expect(acknowledged).toHaveLength(30);

    // A worker dies: the other keeps serving, and the primary starts a replacement.
    process.kill(workers[0]!, 'SIGKILL');
    for (let i = 30; i < 60; i++) if ((await track(i)) === 200) acknowledged.push(i);
    const replaced = await waitFor(
      () => {
        const now = workersOf(child!.pid!);
        return now.length === 2 && !now.includes(workers[0]!) ? now : false;
      },
      { timeout: 60_000, message: 'the killed worker was not replaced' },
    );
    expect(replaced).toContain(workers[1]);
    for (let i = 60; i < 90; i++) if ((await track(i)) === 200) acknowledged.push(i);
    // Requests racing the kill may fail, never be acknowledged and lost.
    expect(acknowledged.length).toBeGreaterThanOrEqual(85);

    const kafka = testKafka(iso.config());
    const records = await consume(
      kafka,
      topics(iso.config().kafka.topicPrefix).events,
      iso.group('check'),
      {
        until: (r) =>
          acknowledged.every((i) =>
            r.some((x) => x.value && eventCodec.decode(x.value).id === `${iso.id}-${i}`),
          ),
        timeout: 60_000,
      },
    );
    expect(new Set(records.map((r) => eventCodec.decode(r.value!).id)).size).toBeGreaterThanOrEqual(
      acknowledged.length,
    );

    // One /metrics for the process: the workers' counters added up (the replaced worker's count is gone with it).
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const total = [...metrics.matchAll(/^lifecycle_ingest_events_total\{[^}]*\} (\d+)/gm)].reduce(
      (n, m) => n + Number(m[1]),
      0,
    );
    expect(total).toBeGreaterThanOrEqual(60);
    expect(metrics.match(/^# TYPE lifecycle_ingest_events_total /gm)).toHaveLength(1);

    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(workersOf(child.pid!)).toEqual([]);
    for (const pid of replaced) expect(() => process.kill(pid, 0)).toThrow();
  }, 240_000);
});
