// Exactly once under SIGKILL: the delivery process is killed at random points while it is
// sending, restarted, killed again...; at the end every expected email is in the SMTP sink
// exactly once, counted by Message-ID (derived from the sendId). The window where a kill can
// duplicate a message (after the relay accepted it, before `sent` is written to Redis) is
// closed by reconciliation: the worker that takes such a send over asks the relay's message
// log (LC_SMTP_LOOKUP_URLS, here the sink's HTTP API) and records `sent` without sending
// again when the relay already has it. Without a lookup the same kill re-sends the message
// with the same Message-ID (at least once); the provider-stage tests cover that path.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createHarness,
  startSink,
  stopSink,
  waitFor,
  welcomeSend,
  type Harness,
} from '../../test/support/delivery-harness.ts';
import type { SmtpSink } from '../../devtools/smtp-sink.ts';

const SENDS = 400;
const KILLS = 4;
const CONCURRENCY = 8;

let h: Harness | undefined;
let sink: (SmtpSink & { dir: string }) | undefined;
let child: ChildProcess | null = null;

afterAll(async () => {
  child?.kill('SIGKILL');
  await h?.close();
  if (sink) await stopSink(sink);
});

describe('delivery under SIGKILL', () => {
  it('delivers every expected email exactly once, reconciling sends taken over mid-call with the relay', async () => {
    sink = await startSink({ http: true });
    h = await createHarness('dlv-kill');
    const logDir = await mkdtemp(join(tmpdir(), 'lc-dlv-kill-'));
    const env = {
      ...process.env,
      ...h.env,
      LC_SMTP_URLS: `smtp://127.0.0.1:${sink.port}`,
      LC_SMTP_LOOKUP_URLS: `http://127.0.0.1:${sink.httpPort}/messages?messageId={messageId}`,
      LC_SMTP_LOOKUP_FOUND: '/messages',
      LC_EMAIL_FROM: 'Example <hello@example.com>',
      LC_QUIET_HOURS: '',
      LC_DELIVERY_LEASE_MS: '2000',
      LC_DELIVERY_CONCURRENCY: String(CONCURRENCY),
      LC_LOG_LEVEL: 'warn',
      KAFKAJS_NO_PARTITIONER_WARNING: '1',
    };
    const start = (n: number) => {
      const p = spawn(process.execPath, ['--import', 'tsx/esm', 'delivery/pipeline/main.ts'], {
        cwd: process.cwd(),
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const log = createWriteStream(join(logDir, `run-${n}.log`));
      p.stdout!.pipe(log);
      p.stderr!.pipe(log);
      return p;
    };

    const sends = Array.from({ length: SENDS }, (_, i) =>
      welcomeSend(`k${i % 100}-${h!.id}`, { category: 'transactional', ruleId: `rule-${i % 4}` }),
    );
    const expected = new Set(
      sends.map((s) => `${s.sendId.replace(/[^A-Za-z0-9._-]/g, '-')}@example.com`),
    );
    const publish = (async () => {
      for (let i = 0; i < sends.length; i += 50) {
        for (const s of sends.slice(i, i + 50)) await h!.publishSend(s);
      }
    })();

    let kills = 0;
    for (let run = 0; run < KILLS; run++) {
      const before = sink.list().length;
      const target = before + 15 + Math.floor(Math.random() * 40);
      child = start(run);
      // Kill while it is sending: after a random number of new messages, at a random moment.
      await waitFor(
        `run ${run} to send`,
        () => sink!.list().length >= Math.min(target, SENDS) || sink!.list().length >= SENDS,
        60_000,
        5,
      ).catch(() => {});
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 30)));
      child.kill('SIGKILL');
      await new Promise((r) => child!.once('exit', r));
      kills++;
      child = null;
      if (new Set(sink.list().map((m) => m.messageId)).size >= SENDS) break;
    }
    await publish;
    child = start(99);
    await waitFor(
      'every expected email',
      () => [...expected].every((id) => sink!.list({ messageId: id }).length > 0),
      120_000,
      250,
    );
    // Let any straggler arrive before counting.
    await new Promise((r) => setTimeout(r, 3000));

    const counts = new Map<string, number>();
    for (const m of sink.list())
      counts.set(m.messageId ?? '', (counts.get(m.messageId ?? '') ?? 0) + 1);
    const unexpected = [...counts.keys()].filter((id) => !expected.has(id));
    const duplicates = [...counts].filter(([, c]) => c > 1).map(([id]) => id);
    // What the takeovers did: each one either found the message at the relay or sent it (again).
    let takeovers = 0;
    let reconciled = 0;
    for (const f of await readdir(logDir)) {
      for (const line of (await readFile(join(logDir, f), 'utf8')).split('\n')) {
        if (line.includes('provider call may have completed')) takeovers++;
        if (line.includes('recorded as sent, not sent again')) reconciled++;
      }
    }
    console.info(
      `sigkill: ${SENDS} sends, ${kills} kills, ${sink.list().length} messages received, ${counts.size} distinct Message-IDs, ${duplicates.length} duplicated; ${takeovers} sends taken over mid-call, ${reconciled} of them found at the relay (logs in ${logDir})`,
    );
    expect(unexpected).toEqual([]);
    expect(counts.size).toBe(SENDS);
    expect(duplicates).toEqual([]);
    // Kills land while sends are in flight, so takeovers happen; each found at most once.
    expect(takeovers).toBeGreaterThan(0);
    expect(reconciled).toBeLessThanOrEqual(takeovers);
    // Every send ends with a `sent` outcome.
    await waitFor(
      'a sent outcome for every send',
      () =>
        sends.every((s) => h!.outcomes.some((o) => o.sendId === s.sendId && o.status === 'sent')),
      60_000,
    );
  }, 400_000);
});
