// Benchmark: email delivery content path.
//  1. Template renders/s of the shipped templates (strict handlebars, layout, generated text
//     part), against raw Handlebars rendering the same body without layout/text as baseline.
//  2. Emails rendered and accepted per second through the SMTP provider (nodemailer pooled
//     connections), against raw nodemailer sending a pre-built message over the same pool
//     and sink as baseline, with the CPU time per message of the sender and of the sink.
//     Twice: into the product's SMTP sink (devtools/smtp-sink.ts, its own process, as
//     scripts/stack runs it), and into a bare smtp-server that only counts (what the sender
//     alone can do). Then two sender threads (two delivery workers) into the product sink.
//     Target >= 2,000 emails/s into the product sink.
// Run alone: npx tsx bench/delivery-email.ts (or through npm run bench -- delivery-email).
import { fork } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import Handlebars from 'handlebars';
import nodemailer from 'nodemailer';
import { SMTPServer } from 'smtp-server';
import { silentLogger } from '../platform/logger.ts';
import { createSmtpSink } from '../devtools/smtp-sink.ts';
import { createSmtpProvider, noDelaySocket, smtpPoolOptions } from '../delivery/providers/email.ts';
import type { OutgoingMessage } from '../delivery/provider.ts';
import { createTemplateRenderer, SAMPLE_LINKS } from '../delivery/templates/index.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const TEMPLATES = path.join(here, '..', 'templates');
const TARGET = 2_000;
const RENDER_MS = 3_000;
const SEND_MS = 8_000;
/** Alternating product/baseline rounds within SEND_MS each. */
const ROUNDS = 4;
const POOL = 8;
const IN_FLIGHT = 64;

const FIRST = ['Ada', 'Grace', 'Linus', 'Margaret', 'Alan', 'Barbara', 'Ken', 'Frances'];
const LOCALES = ['en', 'de', 'de-AT', 'en-GB', 'fr'];
const TEMPLATES_USED = [
  'welcome',
  'activation_tip',
  'trial_ending',
  'payment_failed',
  'weekly_digest',
  'winback',
];

/** A digest as the engine makes it (engine/core/digest.ts): a week of feature uses and exports. */
function benchDigest(i: number): Record<string, unknown> {
  const to = Date.UTC(2026, 10, 23, 8);
  const used = Array.from({ length: 3 + (i % 5) }, (_, n) => ({
    type: 'Feature Used',
    ts: to - (n + 1) * 20 * 3_600_000,
    properties: { feature: ['dashboards', 'sharing', 'search'][n % 3]! },
  }));
  const exported = Array.from({ length: i % 3 }, (_, n) => ({
    type: 'export_done',
    ts: to - (n + 1) * 30 * 3_600_000,
    properties: { format: 'pdf' },
  }));
  const items = [...used, ...exported].sort((a, b) => b.ts - a.ts);
  return {
    window: '7d',
    from: to - 7 * 86_400_000,
    to,
    total: items.length,
    more: false,
    items,
    types: [
      { type: 'Feature Used', count: used.length, atLeast: false, items: used },
      ...(exported.length > 0
        ? [{ type: 'export_done', count: exported.length, atLeast: false, items: exported }]
        : []),
    ],
  };
}

function dataFor(i: number): { template: string; locale: string; data: Record<string, unknown> } {
  const locale = LOCALES[i % LOCALES.length]!;
  return {
    template: TEMPLATES_USED[i % TEMPLATES_USED.length]!,
    locale,
    data: {
      user: {
        email: `user${i}@example.com`,
        firstName: FIRST[i % FIRST.length],
        plan: 'trial',
        locale,
        timezone: 'Europe/Berlin',
        trialEndsAt: Date.UTC(2026, 11, 1) + i * 1000,
      },
      event: {
        type: 'bench',
        properties: {
          amount: 10 + (i % 90),
          currency: 'EUR',
        },
      },
      rule: { id: 'bench' },
      digest: benchDigest(i),
      links: {
        unsubscribe: `${SAMPLE_LINKS.unsubscribe}/${i}`,
        preferences: SAMPLE_LINKS.preferences,
      },
    },
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : Math.round((s[mid - 1]! + s[mid]!) / 2);
}

function timeLoop(ms: number, fn: (i: number) => void): { ops: number; perSec: number } {
  const start = performance.now();
  let i = 0;
  while (performance.now() - start < ms) {
    for (let k = 0; k < 100; k++) fn(i++);
  }
  const secs = (performance.now() - start) / 1000;
  return { ops: i, perSec: Math.round(i / secs) };
}

type SinkKind = 'product' | 'noop';

interface Sink {
  port: number;
  /** Messages accepted so far and the sink process's CPU time (ms). */
  count(): Promise<{ messages: number; cpuMs: number }>;
  close(): Promise<void>;
}

/**
 * A sink process of its own, as `scripts/stack up` runs it: `product` is the platform's SMTP
 * sink (devtools/smtp-sink.ts: every message kept on disk, read API), `noop` a bare
 * smtp-server that only counts, to show what the sender alone can do.
 */
async function startSink(kind: SinkKind): Promise<Sink> {
  const child = fork(fileURLToPath(import.meta.url), [`--smtp-sink-process=${kind}`], {
    execArgv: ['--import', 'tsx/esm'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`sink process exited with ${code}`)));
  });
  return {
    port,
    count: () =>
      new Promise((resolve) => {
        child.once('message', (m) => resolve(m as { messages: number; cpuMs: number }));
        child.send('count');
      }),
    close: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.send('close');
      await exited;
    },
  };
}

async function sinkProcess(kind: SinkKind): Promise<void> {
  let messages = 0;
  let close: () => Promise<void>;
  let port: number;
  const dir = await mkdtemp(path.join(tmpdir(), 'lc-bench-sink-'));
  if (kind === 'product') {
    // As scripts/stack runs it: read over HTTP only, so views are built when read.
    const sink = createSmtpSink({ port: 0, dir, views: 'on-read' });
    await sink.start();
    port = sink.port;
    close = () => sink.stop();
    const count = () => sink.health().messages;
    process.on('message', (m) => {
      if (m === 'count') {
        const u = process.cpuUsage();
        process.send!({ messages: count(), cpuMs: (u.user + u.system) / 1000 });
      }
    });
  } else {
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      disableReverseLookup: true,
      logger: false,
      maxClients: 1000,
      onData(stream, _session, cb) {
        stream.on('data', () => undefined);
        stream.on('end', () => {
          messages++;
          cb(null);
        });
      },
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.server.address() as AddressInfo).port;
    close = () => new Promise<void>((resolve) => server.close(() => resolve()));
    process.on('message', (m) => {
      if (m === 'count') {
        const u = process.cpuUsage();
        process.send!({ messages, cpuMs: (u.user + u.system) / 1000 });
      }
    });
  }
  process.on('message', (m) => {
    if (m !== 'close') return;
    void close()
      .then(() => rm(dir, { recursive: true, force: true }))
      .finally(() => process.exit(0));
  });
  process.send!({ port });
}

/** Keeps `inFlight` sends running for `ms`; returns accepted sends/s. */
async function sendLoop(
  ms: number,
  inFlight: number,
  sendOne: (i: number) => Promise<boolean>,
): Promise<{ accepted: number; failed: number; perSec: number }> {
  let i = 0;
  let accepted = 0;
  let failed = 0;
  const start = performance.now();
  const deadline = start + ms;
  const lane = async () => {
    while (performance.now() < deadline) {
      if (await sendOne(i++)) accepted++;
      else failed++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  const secs = (performance.now() - start) / 1000;
  return { accepted, failed, perSec: Math.round(accepted / secs) };
}

function messageFactory(
  renderer: ReturnType<typeof createTemplateRenderer>,
): (i: number) => OutgoingMessage {
  return (i) => {
    const d = dataFor(i);
    return {
      sendId: `bench-${i}`,
      ruleId: 'bench',
      category: 'marketing',
      channel: 'email',
      recipient: {
        userId: `u${i}`,
        email: `user${i}@example.com`,
        locale: d.locale,
        timezone: 'Europe/Berlin',
      },
      content: renderer.render(d.template, 'email', d.locale, d.data),
      headers: {
        'List-Unsubscribe': `<${SAMPLE_LINKS.unsubscribe}/${i}>`,
        'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
      },
    };
  };
}

/** The product's SMTP provider as the benchmark runs it: the bench pool size, long-lived connections. */
function benchProvider(url: string, logger: ReturnType<typeof silentLogger>) {
  return createSmtpProvider(
    {
      name: 'smtp-bench',
      url,
      from: 'Example <hello@example.com>',
      maxConnections: POOL,
      maxMessages: 1000,
    },
    { logger },
  );
}

/** Renders and sends through the SMTP provider for `ms`, after a short warm-up (pool connections, JIT). */
async function productSend(
  url: string,
  ms: number,
  offset: number,
): Promise<{ accepted: number; failed: number; perSec: number }> {
  const logger = silentLogger();
  const toMessage = messageFactory(createTemplateRenderer({ dir: TEMPLATES }, logger));
  const provider = benchProvider(url, logger);
  await sendLoop(
    500,
    32,
    async (i) => (await provider.send(toMessage(offset + 5_000_000 + i))).status === 'sent',
  );
  const result = await sendLoop(
    ms,
    IN_FLIGHT,
    async (i) => (await provider.send(toMessage(offset + i))).status === 'sent',
  );
  await provider.close?.();
  return result;
}

function senderThread(
  url: string,
  ms: number,
  offset: number,
): Promise<{ accepted: number; failed: number; perSec: number }> {
  // The worker loads this same TypeScript file; loader flags do not reach worker threads,
  // so it registers tsx itself first.
  const api = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  const code = `import(${api}).then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); })`;
  const worker = new Worker(code, { eval: true, workerData: { role: 'sender', url, ms, offset } });
  return new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
}

interface Rounds {
  accepted: number;
  failed: number;
  perSec: number;
  senderCpuMs: number;
  sinkCpuMs: number;
}

/** Product and baseline rounds into one sink, with each process's CPU time per message. */
async function sendRounds(kind: SinkKind, renderer: ReturnType<typeof createTemplateRenderer>) {
  const logger = silentLogger();
  const sink = await startSink(kind);
  const url = `smtp://127.0.0.1:${sink.port}`;
  // Product and baseline alternate in short rounds and the medians are compared, so a burst
  // of load from other processes on the machine hits both alike.
  const toMessage = messageFactory(renderer);
  const provider = benchProvider(url, logger);
  // Same pool and socket settings as the provider (Nagle off), so the ratio is the cost of
  // rendering and the provider itself.
  const transport = nodemailer.createTransport(
    smtpPoolOptions(url, {
      pool: true,
      maxConnections: POOL,
      maxMessages: 1000,
      getSocket: noDelaySocket(10_000),
    }),
  );
  const fixed = toMessage(0).content;
  let n = 0;
  const productOnce = async () => (await provider.send(toMessage(n++))).status === 'sent';
  const baselineOnce = async () => {
    try {
      await transport.sendMail({
        from: 'hello@example.com',
        to: `user${n++}@example.com`,
        subject: fixed.subject,
        html: fixed.html,
        text: fixed.text,
      });
      return true;
    } catch {
      return false;
    }
  };
  const measured = async (once: () => Promise<boolean>): Promise<Rounds> => {
    const c0 = process.cpuUsage();
    const s0 = await sink.count();
    const r = await sendLoop(SEND_MS / ROUNDS, IN_FLIGHT, once);
    const c1 = process.cpuUsage(c0);
    const s1 = await sink.count();
    return { ...r, senderCpuMs: (c1.user + c1.system) / 1000, sinkCpuMs: s1.cpuMs - s0.cpuMs };
  };
  // Warm both paths (pool connections, JIT of rendering and MIME building) before timing.
  await sendLoop(1500, 32, productOnce);
  await sendLoop(1000, 32, baselineOnce);
  const productRounds: Rounds[] = [];
  const baselineRounds: Rounds[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    productRounds.push(await measured(productOnce));
    baselineRounds.push(await measured(baselineOnce));
  }
  await provider.close?.();
  transport.close();
  await sink.close();
  const perMessage = (rs: Rounds[]) => {
    const accepted = Math.max(
      1,
      rs.reduce((a, r) => a + r.accepted, 0),
    );
    return {
      sender: Math.round((rs.reduce((a, r) => a + r.senderCpuMs, 0) * 1000) / accepted),
      sink: Math.round((rs.reduce((a, r) => a + r.sinkCpuMs, 0) * 1000) / accepted),
    };
  };
  const productPerSec = median(productRounds.map((r) => r.perSec));
  const baselinePerSec = median(baselineRounds.map((r) => r.perSec));
  return {
    /** Median of the rounds. */
    renderedAndAcceptedPerSec: productPerSec,
    productRounds: productRounds.map((r) => r.perSec),
    accepted: productRounds.reduce((a, r) => a + r.accepted, 0),
    failed: productRounds.reduce((a, r) => a + r.failed, 0),
    baselineRawNodemailerPerSec: baselinePerSec,
    baselineRounds: baselineRounds.map((r) => r.perSec),
    ratioToBaseline: Number((productPerSec / Math.max(1, baselinePerSec)).toFixed(2)),
    /** Process CPU time per accepted message (user + system), sender and sink process. */
    cpuUsPerMessage: { product: perMessage(productRounds), baseline: perMessage(baselineRounds) },
  };
}

export async function run() {
  const logger = silentLogger();
  const renderer = createTemplateRenderer({ dir: TEMPLATES }, logger);
  const problems = renderer.validate();
  if (problems.length)
    throw new Error(
      `templates do not validate: ${problems.map((p) => `${p.file}: ${p.message}`).join('; ')}`,
    );

  // 1. Renders: full product render vs raw handlebars of one body.
  let sinkChars = 0;
  const render = timeLoop(RENDER_MS, (i) => {
    const d = dataFor(i);
    const out = renderer.render(d.template, 'email', d.locale, d.data);
    sinkChars += out.html!.length + out.text!.length;
  });
  const hb = Handlebars.create();
  const raw = hb.compile(
    '<p>Hi {{user.firstName}},</p><p>Thanks for signing up, your {{user.plan}} plan is ready.</p><p><a href="{{links.unsubscribe}}">Unsubscribe</a></p>',
    { strict: true },
  );
  const baselineRender = timeLoop(RENDER_MS, (i) => {
    sinkChars += raw(dataFor(i).data).length;
  });

  // 2. Render + send through the SMTP provider vs raw nodemailer with a fixed message.
  const product = await sendRounds('product', renderer);
  const noop = await sendRounds('noop', renderer);

  // Two delivery workers (threads here, processes or machines in production) sharing the sink.
  const sink = await startSink('product');
  const url = `smtp://127.0.0.1:${sink.port}`;
  const beforeScaled = await sink.count();
  const scaled = await Promise.all(
    [0, 1].map((w) => senderThread(url, SEND_MS, (w + 1) * 10_000_000)),
  );
  const afterScaled = await sink.count();
  await sink.close();
  const scaledPerSec = scaled.reduce((a, r) => a + r.perSec, 0);

  const result = {
    target: TARGET,
    passed:
      Math.max(product.renderedAndAcceptedPerSec, scaledPerSec) >= TARGET &&
      product.failed === 0 &&
      scaled.every((r) => r.failed === 0),
    renders: {
      perSec: render.perSec,
      ops: render.ops,
      baselineRawHandlebarsPerSec: baselineRender.perSec,
      templates: TEMPLATES_USED,
      locales: LOCALES,
    },
    smtp: {
      poolConnections: POOL,
      inFlight: IN_FLIGHT,
      seconds: SEND_MS / 1000,
      rounds: ROUNDS,
      productSink: product,
      noopSink: noop,
      twoWorkers: {
        perSec: scaledPerSec,
        perWorker: scaled.map((r) => r.perSec),
        failed: scaled.reduce((a, r) => a + r.failed, 0),
        sinkReceived: afterScaled.messages - beforeScaled.messages,
        sinkCpuUsPerMessage: Math.round(
          ((afterScaled.cpuMs - beforeScaled.cpuMs) * 1000) /
            Math.max(1, afterScaled.messages - beforeScaled.messages),
        ),
      },
    },
    checksum: sinkChars % 1000,
  };
  await mkdir(path.join(here, 'results'), { recursive: true });
  await writeFile(
    path.join(here, 'results', 'delivery-email.json'),
    `${JSON.stringify(result, null, 2)}\n`,
  );
  const fmt = (n: number) => n.toLocaleString('en-US');
  console.log(
    `template renders: ${fmt(render.perSec)}/s (email: layout + generated text part; raw handlebars body: ${fmt(baselineRender.perSec)}/s)`,
  );
  for (const [label, r] of [
    ['product SMTP sink (devtools/smtp-sink.ts, own process)', product],
    ['bare smtp-server that only counts (own process)', noop],
  ] as const) {
    console.log(
      `${label}: rendered + accepted ${fmt(r.renderedAndAcceptedPerSec)}/s median of ${ROUNDS} rounds [${r.productRounds.map(fmt).join(', ')}] over ${POOL} pooled connections (${r.failed} failed), ` +
        `CPU/message sender ${fmt(r.cpuUsPerMessage.product.sender)} us + sink ${fmt(r.cpuUsPerMessage.product.sink)} us; ` +
        `raw nodemailer, pre-built message, same pool and sink: ${fmt(r.baselineRawNodemailerPerSec)}/s [${r.baselineRounds.map(fmt).join(', ')}], ` +
        `CPU/message sender ${fmt(r.cpuUsPerMessage.baseline.sender)} us + sink ${fmt(r.cpuUsPerMessage.baseline.sink)} us (ratio ${r.ratioToBaseline})`,
    );
  }
  console.log(
    `two delivery workers (threads), each with its own pool, into the product sink: ${fmt(scaledPerSec)}/s (${scaled.map((r) => fmt(r.perSec)).join(' + ')}), sink CPU/message ${fmt(result.smtp.twoWorkers.sinkCpuUsPerMessage)} us`,
  );
  console.log(`target >= ${fmt(TARGET)} emails/s: ${result.passed ? 'met' : 'NOT met'}`);
  return result;
}

const sinkArg = process.argv.find((a) => a.startsWith('--smtp-sink-process='));
if (sinkArg) {
  await sinkProcess(sinkArg.slice('--smtp-sink-process='.length) as SinkKind);
} else if (!isMainThread && (workerData as { role?: string } | null)?.role === 'sender') {
  const { url, ms, offset } = workerData as { url: string; ms: number; offset: number };
  parentPort!.postMessage(await productSend(url, ms, offset));
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await run();
}
