// Benchmark: email delivery content path.
//  1. Template renders/s of the shipped templates (strict handlebars, layout, generated text
//     part), against raw Handlebars rendering the same body without layout/text as baseline.
//  2. Emails rendered and accepted by a local SMTP sink per second through the SMTP provider
//     (nodemailer pooled connections), against raw nodemailer sending a pre-built message
//     over the same pool size as baseline. Target >= 2,000 emails/s.
// The sink (smtp-server) runs in a worker thread so it does not share the sender's event loop.
// Run alone: npx tsx bench/delivery-email.ts (or through npm run bench -- delivery-email).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import Handlebars from 'handlebars';
import nodemailer from 'nodemailer';
import { silentLogger } from '../platform/logger.ts';
import { createSmtpProvider } from '../delivery/providers/email.ts';
import type { OutgoingMessage } from '../delivery/providers/types.ts';
import { createTemplateRenderer, SAMPLE_LINKS } from '../delivery/templates/index.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const TEMPLATES = path.join(here, '..', 'templates');
const TARGET = 2_000;
const RENDER_MS = 3_000;
const SEND_MS = 8_000;
const POOL = 8;
const IN_FLIGHT = 256;

const FIRST = ['Ada', 'Grace', 'Linus', 'Margaret', 'Alan', 'Barbara', 'Ken', 'Frances'];
const LOCALES = ['en', 'de', 'de-AT', 'en-GB', 'fr'];
const TEMPLATES_USED = ['welcome', 'activation_tip', 'trial_ending', 'payment_failed', 'weekly_digest', 'winback'];

function dataFor(i: number): { template: string; locale: string; data: Record<string, unknown> } {
  const locale = LOCALES[i % LOCALES.length]!;
  return {
    template: TEMPLATES_USED[i % TEMPLATES_USED.length]!,
    locale,
    data: {
      user: { email: `user${i}@example.com`, firstName: FIRST[i % FIRST.length], plan: 'trial', locale, timezone: 'Europe/Berlin', trialEndsAt: Date.UTC(2026, 11, 1) + i * 1000 },
      event: {
        type: 'bench',
        properties: { amount: 10 + (i % 90), currency: 'EUR', weekStart: '2026-11-16', projectsUpdated: i % 7, reportsExported: i % 3, highlights: [{ title: `Project ${i}`, url: `https://app.example.com/p/${i}` }] },
      },
      rule: { id: 'bench' },
      links: { unsubscribe: `${SAMPLE_LINKS.unsubscribe}/${i}`, preferences: SAMPLE_LINKS.preferences },
    },
  };
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
async function sendLoop(ms: number, inFlight: number, sendOne: (i: number) => Promise<boolean>): Promise<{ accepted: number; failed: number; perSec: number }> {
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

export async function run() {
  const logger = silentLogger();
  const renderer = createTemplateRenderer({ dir: TEMPLATES }, logger);
  const problems = renderer.validate();
  if (problems.length) throw new Error(`templates do not validate: ${problems.map((p) => `${p.file}: ${p.message}`).join('; ')}`);

  // 1. Renders: full product render vs raw handlebars of one body.
  let sinkChars = 0;
  const render = timeLoop(RENDER_MS, (i) => {
    const d = dataFor(i);
    const out = renderer.render(d.template, 'email', d.locale, d.data);
    sinkChars += out.html!.length + out.text!.length;
  });
  const hb = Handlebars.create();
  const raw = hb.compile('<p>Hi {{user.firstName}},</p><p>Thanks for signing up, your {{user.plan}} plan is ready.</p><p><a href="{{links.unsubscribe}}">Unsubscribe</a></p>', { strict: true });
  const baselineRender = timeLoop(RENDER_MS, (i) => {
    sinkChars += raw(dataFor(i).data).length;
  });

  // 2. Render + send through the SMTP provider vs raw nodemailer with a fixed message.
  const sink = await startSink();
  const url = `smtp://127.0.0.1:${sink.port}`;
  const provider = createSmtpProvider({ name: 'smtp-bench', url, from: 'Example <hello@example.com>', maxConnections: POOL, maxMessages: 1000 }, { logger });
  // Warm the pool (connections, JIT) before timing.
  await sendLoop(500, 32, async (i) => (await provider.send(toMessage(i))).status === 'sent');
  function toMessage(i: number): OutgoingMessage {
    const d = dataFor(i);
    return {
      sendId: `bench-${i}`,
      ruleId: 'bench',
      category: 'marketing',
      channel: 'email',
      recipient: { userId: `u${i}`, email: `user${i}@example.com`, locale: d.locale, timezone: 'Europe/Berlin' },
      content: renderer.render(d.template, 'email', d.locale, d.data),
      headers: { 'List-Unsubscribe': `<${SAMPLE_LINKS.unsubscribe}/${i}>`, 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' },
    };
  }
  const before = await sink.count();
  const product = await sendLoop(SEND_MS, IN_FLIGHT, async (i) => (await provider.send(toMessage(i))).status === 'sent');
  const afterProduct = await sink.count();
  await provider.close?.();

  const transport = nodemailer.createTransport({ url, pool: true, maxConnections: POOL, maxMessages: 1000 } as nodemailer.TransportOptions);
  const fixed = toMessage(0).content;
  const baseline = await sendLoop(SEND_MS, IN_FLIGHT, async (i) => {
    try {
      await transport.sendMail({ from: 'hello@example.com', to: `user${i}@example.com`, subject: fixed.subject, html: fixed.html, text: fixed.text });
      return true;
    } catch {
      return false;
    }
  });
  transport.close();
  await sink.close();

  const sinkAccepted = afterProduct.messages - before.messages;
  const result = {
    target: TARGET,
    passed: product.perSec >= TARGET && product.failed === 0,
    renders: { perSec: render.perSec, ops: render.ops, baselineRawHandlebarsPerSec: baselineRender.perSec, templates: TEMPLATES_USED, locales: LOCALES },
    smtp: {
      poolConnections: POOL,
      inFlight: IN_FLIGHT,
      seconds: SEND_MS / 1000,
      renderedAndAcceptedPerSec: product.perSec,
      accepted: product.accepted,
      failed: product.failed,
      sinkCounted: sinkAccepted,
      avgMessageBytes: Math.round((afterProduct.bytes - before.bytes) / Math.max(1, sinkAccepted)),
      baselineRawNodemailerPerSec: baseline.perSec,
      ratioToBaseline: Number((product.perSec / Math.max(1, baseline.perSec)).toFixed(2)),
    },
    checksum: sinkChars % 1000,
  };
  await mkdir(path.join(here, 'results'), { recursive: true });
  await writeFile(path.join(here, 'results', 'delivery-email.json'), `${JSON.stringify(result, null, 2)}\n`);
  const fmt = (n: number) => n.toLocaleString('en-US');
  console.log(`template renders: ${fmt(render.perSec)}/s (email: layout + generated text part; raw handlebars body: ${fmt(baselineRender.perSec)}/s)`);
  console.log(
    `emails rendered + accepted by the SMTP sink: ${fmt(product.perSec)}/s over ${POOL} pooled connections (${fmt(product.accepted)} in ${SEND_MS / 1000}s, ${product.failed} failed, sink counted ${fmt(sinkAccepted)}); ` +
      `raw nodemailer with a pre-built message: ${fmt(baseline.perSec)}/s (ratio ${result.smtp.ratioToBaseline})`,
  );
  console.log(`target >= ${fmt(TARGET)} emails/s: ${result.passed ? 'met' : 'NOT met'}`);
  return result;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await run();
