// Benchmark: email delivery content path.
//  1. Template renders/s of the shipped templates (strict handlebars, layout, generated text
//     part), against raw Handlebars rendering the same body without layout/text as baseline.
//  2. Emails rendered and accepted by a local SMTP sink per second through the SMTP provider
//     (nodemailer pooled connections), against raw nodemailer sending a pre-built message
//     over the same pool size as baseline; then with two sender threads (two delivery
//     workers, as the consumer group scales out). Target >= 2,000 emails/s.
// The sink (smtp-server) runs in a worker thread so it does not share the sender's event loop.
// Run alone: npx tsx bench/delivery-email.ts (or through npm run bench -- delivery-email).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import Handlebars from 'handlebars';
import nodemailer from 'nodemailer';
import { silentLogger } from '../platform/logger.ts';
import { createSmtpProvider, noDelaySocket } from '../delivery/providers/email.ts';
import type { OutgoingMessage } from '../delivery/providers/types.ts';
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
          weekStart: '2026-11-16',
          projectsUpdated: i % 7,
          reportsExported: i % 3,
          highlights: [{ title: `Project ${i}`, url: `https://app.example.com/p/${i}` }],
        },
      },
      rule: { id: 'bench' },
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

// The sink: accepts everything, counts messages and bytes. CommonJS because eval'd workers are.
const SINK = `
const { parentPort } = require('node:worker_threads');
const { SMTPServer } = require('smtp-server');
let messages = 0, bytes = 0;
const server = new SMTPServer({
  authOptional: true, disabledCommands: ['AUTH', 'STARTTLS'], disableReverseLookup: true, logger: false, maxClients: 1000,
  onData(stream, _session, cb) { stream.on('data', (c) => { bytes += c.length; }); stream.on('end', () => { messages++; cb(); }); },
});
server.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: server.server.address().port }));
parentPort.on('message', (m) => {
  if (m === 'count') parentPort.postMessage({ messages, bytes });
  if (m === 'close') server.close(() => process.exit(0));
});`;

interface Sink {
  port: number;
  count(): Promise<{ messages: number; bytes: number }>;
  close(): Promise<void>;
}

async function startSink(): Promise<Sink> {
  const worker = new Worker(SINK, { eval: true });
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', (m: { port: number }) => resolve(m.port));
    worker.once('error', reject);
  });
  return {
    port,
    count: () =>
      new Promise((resolve) => {
        worker.once('message', (m: { messages: number; bytes: number }) => resolve(m));
        worker.postMessage('count');
      }),
    close: async () => {
      worker.postMessage('close');
      await new Promise((resolve) => worker.once('exit', resolve));
    },
  };
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

/** Renders and sends through the SMTP provider for `ms`, after a short warm-up (pool connections, JIT). */
async function productSend(
  url: string,
  ms: number,
  offset: number,
): Promise<{ accepted: number; failed: number; perSec: number }> {
  const logger = silentLogger();
  const toMessage = messageFactory(createTemplateRenderer({ dir: TEMPLATES }, logger));
  const provider = createSmtpProvider(
    {
      name: 'smtp-bench',
      url,
      from: 'Example <hello@example.com>',
      maxConnections: POOL,
      maxMessages: 1000,
    },
    { logger },
  );
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
  const sink = await startSink();
  const url = `smtp://127.0.0.1:${sink.port}`;
  // Product and baseline alternate in short rounds and the medians are compared, so a burst
  // of load from other processes on the machine hits both alike.
  const toMessage = messageFactory(renderer);
  const provider = createSmtpProvider(
    {
      name: 'smtp-bench',
      url,
      from: 'Example <hello@example.com>',
      maxConnections: POOL,
      maxMessages: 1000,
    },
    { logger },
  );
  // Same pool and socket settings as the provider (Nagle off), so the ratio is the cost of
  // rendering and the provider itself.
  const transport = nodemailer.createTransport({
    url,
    pool: true,
    maxConnections: POOL,
    maxMessages: 1000,
    getSocket: noDelaySocket(10_000),
  } as nodemailer.TransportOptions);
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
  // Warm both paths (pool connections, JIT of rendering and MIME building) before timing.
  await sendLoop(1500, 32, productOnce);
  await sendLoop(1000, 32, baselineOnce);
  const before = await sink.count();
  const productRounds: { accepted: number; failed: number; perSec: number }[] = [];
  const baselineRounds: { accepted: number; failed: number; perSec: number }[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    productRounds.push(await sendLoop(SEND_MS / ROUNDS, IN_FLIGHT, productOnce));
    baselineRounds.push(await sendLoop(SEND_MS / ROUNDS, IN_FLIGHT, baselineOnce));
  }
  const afterProduct = await sink.count();
  await provider.close?.();
  transport.close();
  const product = {
    perSec: median(productRounds.map((r) => r.perSec)),
    accepted: productRounds.reduce((a, r) => a + r.accepted, 0),
    failed: productRounds.reduce((a, r) => a + r.failed, 0),
    rounds: productRounds.map((r) => r.perSec),
  };
  const baseline = {
    perSec: median(baselineRounds.map((r) => r.perSec)),
    rounds: baselineRounds.map((r) => r.perSec),
  };

  // Two delivery workers (threads here, processes or machines in production) sharing the sink.
  const beforeScaled = await sink.count();
  const scaled = await Promise.all(
    [0, 1].map((w) => senderThread(url, SEND_MS, (w + 1) * 10_000_000)),
  );
  const afterScaled = await sink.count();
  await sink.close();
  const scaledPerSec = scaled.reduce((a, r) => a + r.perSec, 0);

  const sinkAccepted = afterProduct.messages - before.messages;
  const result = {
    target: TARGET,
    passed:
      Math.max(product.perSec, scaledPerSec) >= TARGET &&
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
      /** Median of the rounds. */
      renderedAndAcceptedPerSec: product.perSec,
      productRounds: product.rounds,
      accepted: product.accepted,
      failed: product.failed,
      // Product and baseline rounds together.
      sinkReceived: sinkAccepted,
      avgMessageBytes: Math.round((afterProduct.bytes - before.bytes) / Math.max(1, sinkAccepted)),
      baselineRawNodemailerPerSec: baseline.perSec,
      baselineRounds: baseline.rounds,
      ratioToBaseline: Number((product.perSec / Math.max(1, baseline.perSec)).toFixed(2)),
      twoWorkers: {
        perSec: scaledPerSec,
        perWorker: scaled.map((r) => r.perSec),
        failed: scaled.reduce((a, r) => a + r.failed, 0),
        sinkReceived: afterScaled.messages - beforeScaled.messages,
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
  console.log(
    `emails rendered + accepted by the SMTP sink: ${fmt(product.perSec)}/s median of ${ROUNDS} rounds [${product.rounds.map(fmt).join(', ')}] over ${POOL} pooled connections (${product.failed} failed); ` +
      `raw nodemailer with a pre-built message, alternating: ${fmt(baseline.perSec)}/s [${baseline.rounds.map(fmt).join(', ')}] (ratio ${result.smtp.ratioToBaseline})`,
  );
  console.log(
    `two delivery workers (threads), each with its own pool: ${fmt(scaledPerSec)}/s (${scaled.map((r) => fmt(r.perSec)).join(' + ')})`,
  );
  console.log(`target >= ${fmt(TARGET)} emails/s: ${result.passed ? 'met' : 'NOT met'}`);
  return result;
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === 'sender') {
  const { url, ms, offset } = workerData as { url: string; ms: number; offset: number };
  parentPort!.postMessage(await productSend(url, ms, offset));
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await run();
}
