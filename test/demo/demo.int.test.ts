// The embedded default end to end: sample users go in through the real ingest API, the
// engine matches the example rules, delivery honours consent and sends through SMTP into
// the outbox; a new event sent like a Segment SDK would becomes another email.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../platform/logger.ts';
import { startDemo, type Demo } from '../../bin/demo.ts';

interface Mail {
  to: string[];
  subject: string;
  headers: Record<string, string | string[]>;
}

async function outbox(demo: Demo): Promise<Mail[]> {
  return ((await (await fetch(demo.urls.outbox!)).json()) as { messages: Mail[] }).messages;
}

async function waitForMail(demo: Demo, pred: (m: Mail[]) => boolean, ms = 20_000): Promise<Mail[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const mails = await outbox(demo);
    if (pred(mails) || Date.now() > deadline) return mails;
    await new Promise((r) => setTimeout(r, 200));
  }
}

const ADMIN = 'demo-test-admin-token';

describe('lifecycle demo', () => {
  let demo: Demo;
  beforeAll(async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'lc-demo-'));
    demo = await startDemo(
      {
        dataDir,
        seed: true,
        overrides: { 'http.apiPort': 0, 'http.ingestPort': 0, 'auth.adminToken': ADMIN },
      },
      silentLogger(),
    );
  });
  afterAll(async () => demo?.stop());

  it('sends the welcome to every sample user and marketing only to those who opted in', async () => {
    const mails = await waitForMail(demo, (m) => m.length >= 5);
    const to = (addr: string) => mails.filter((m) => m.to.includes(addr)).map((m) => m.subject);
    expect(to('ada@example.com')).toContain('Welcome to Example, Ada!');
    expect(to('bert@example.com')).toContain('Willkommen bei Example, Bert!');
    // Chen never opted in to marketing: the transactional payment notice arrives, the trial reminder does not.
    expect(to('chen@example.com').some((s) => /payment/i.test(s))).toBe(true);
    expect(to('chen@example.com').some((s) => /trial/i.test(s))).toBe(false);
    const marketing = mails.find(
      (m) => m.to.includes('ada@example.com') && /trial/i.test(m.subject),
    );
    expect(marketing?.headers['list-unsubscribe-post']).toBe('List-Unsubscribe=One-Click');
  });

  it('takes a new event through the Segment-compatible API to a new email', async () => {
    const before = (await outbox(demo)).length;
    const res = await fetch(`${demo.urls.ingest}/v1/track`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Basic ${Buffer.from(`${demo.writeKey}:`).toString('base64')}`,
      },
      body: JSON.stringify({
        userId: 'demo-new',
        event: 'user_registered',
        messageId: 'it-demo-new',
        context: { traits: {} },
      }),
    });
    expect(res.status).toBeLessThan(300);
    const identify = await fetch(`${demo.urls.ingest}/v1/identify`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Basic ${Buffer.from(`${demo.writeKey}:`).toString('base64')}`,
      },
      body: JSON.stringify({
        userId: 'demo-dora',
        messageId: 'it-demo-dora-id',
        traits: { email: 'dora@example.com', firstName: 'Dora', plan: 'trial' },
      }),
    });
    expect(identify.status).toBeLessThan(300);
    await fetch(`${demo.urls.ingest}/v1/track`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Basic ${Buffer.from(`${demo.writeKey}:`).toString('base64')}`,
      },
      body: JSON.stringify({
        userId: 'demo-dora',
        event: 'user_registered',
        messageId: 'it-demo-dora-reg',
      }),
    });
    const mails = await waitForMail(demo, (m) => m.some((x) => x.to.includes('dora@example.com')));
    expect(mails.length).toBeGreaterThan(before);
    expect(mails.find((m) => m.to.includes('dora@example.com'))?.subject).toBe(
      'Welcome to Example, Dora!',
    );
  });

  it('sends a campaign to an uploaded list once to each member who opted in, and reports it', async () => {
    const api = (method: string, path: string, body?: string, type = 'application/json') =>
      fetch(`${demo.urls.api}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${ADMIN}`,
          ...(body !== undefined ? { 'content-type': type } : {}),
        },
        ...(body !== undefined ? { body } : {}),
      });
    const created = await api(
      'POST',
      '/v1/campaigns',
      JSON.stringify({
        name: 'Come back',
        audience: { type: 'list' },
        message: { template: 'winback', channels: ['email'] },
        schedule: { type: 'now' },
      }),
    );
    expect(created.status).toBe(201);
    const { id } = ((await created.json()) as { campaign: { id: string } }).campaign;
    const upload = await api(
      'PUT',
      `/v1/campaigns/${id}/audience`,
      'userId\ndemo-ada\ndemo-bert\ndemo-chen\n',
      'text/csv',
    );
    expect(upload.status).toBe(200);
    expect(((await upload.json()) as { report: { accepted: number } }).report.accepted).toBe(3);
    expect((await api('POST', `/v1/campaigns/${id}/schedule`)).status).toBe(200);
    const winback = (m: Mail[]) => m.filter((x) => /We miss you|Wir vermissen Sie/.test(x.subject));
    const mails = await waitForMail(demo, (m) => winback(m).length >= 2);
    // Chen never opted in to marketing: asked, matched, suppressed.
    expect(
      winback(mails)
        .flatMap((m) => m.to)
        .sort(),
    ).toEqual(['ada@example.com', 'bert@example.com']);
    let progress: Record<string, unknown> = {};
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const res = (await (await api('GET', `/v1/campaigns/${id}`)).json()) as {
        campaign: { state: string };
        progress: Record<string, unknown> & {
          outcomes: { matched: number; sent: number; suppressed: number } | null;
        };
      };
      progress = { state: res.campaign.state, ...res.progress };
      // Matches are counted from the send commands, outcomes from the deliveries: two
      // tables the analytics sink fills one after the other, so either may show first.
      const o = res.progress.outcomes;
      if (o?.matched === 3 && o.sent === 2 && o.suppressed === 1) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(progress).toMatchObject({
      state: 'completed',
      runs: 1,
      planned: 3,
      fannedOut: 3,
      outcomes: { matched: 3, sent: 2, suppressed: 1, failed: 0 },
    });
  });

  it('reports health of the embedded services', async () => {
    const res = await fetch(demo.urls.health!);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { ok: boolean }).ok).toBe(true);
  });
});
