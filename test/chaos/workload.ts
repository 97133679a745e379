// The chaos run's workload: users who arrive over HTTP (Segment batches to the ingest API)
// and users who arrive from the product database (rows inserted into PostgreSQL, read by
// Debezium). A user's events go out in order, each batch retried with the same messageIds
// until ingest acknowledges it, as a Segment SDK would; what the driver knows it sent is
// kept so the checks can tell a lost event from one never acknowledged.
import { between, pick, sleep, stream } from './random.ts';
import { psql } from '../support/postgres.ts';

export interface WorkloadUser {
  userId: string;
  email: string;
  origin: 'http' | 'cdc';
  plan: 'trial' | 'pro';
  /** Opted in to marketing email before the first event. */
  optedIn: boolean;
}

export interface WorkloadStats {
  users: WorkloadUser[];
  /** messageIds of HTTP events that ingest acknowledged (200). */
  acknowledged: Set<string>;
  /** messageIds sent at least once without a 200 by the end of the run. */
  unacknowledged: Set<string>;
  /** CDC user ids whose row was committed. */
  cdcRows: Set<string>;
  /** CDC user ids whose row was deleted (right to be forgotten), the deletion committed. */
  deleted: Set<string>;
  httpEvents: number;
  httpRetries: number;
  /** Answers in the 4xx range: a well-formed event refused is a failure of the run. */
  refused: string[];
  cdcStatements: number;
  cdcRetries: number;
}

export interface WorkloadOptions {
  seed: number;
  runTag: string;
  ingestUrl: () => string;
  writeKey: string;
  postgresUrl: string;
  /** Schema of this run's `users` table. */
  schema: string;
  /** Parallel HTTP user sessions. */
  sessions: number;
  /** Pause of a session between two users. */
  userPauseMs?: number;
  /** Every how many HTTP users one CDC user arrives. */
  cdcEvery: number;
  /** Opts a user in to marketing email (the product's preference store). */
  optIn: (userId: string) => Promise<void>;
  /** True once no new users should start. */
  done: () => boolean;
  /** When retries give up (the run's hard end). */
  deadline: () => number;
  log: (line: string) => void;
}

const FEATURES = ['export', 'share', 'search', 'invite', 'dashboard'];
const NAMES = ['Ada', 'Grace', 'Linus', 'Barbara', 'Ken', 'Radia', 'Edsger'];

export async function createUsersTable(postgresUrl: string, schema: string): Promise<void> {
  await psql(
    postgresUrl,
    `CREATE SCHEMA ${schema};
     CREATE TABLE ${schema}.users (
       id text PRIMARY KEY, email text, first_name text, plan text NOT NULL, signup_source text,
       email_verified boolean NOT NULL DEFAULT false, created_at timestamp NOT NULL DEFAULT now());
     ALTER TABLE ${schema}.users REPLICA IDENTITY FULL;`,
  );
}

export function runWorkload(o: WorkloadOptions): { stats: WorkloadStats; finished: Promise<void> } {
  const stats: WorkloadStats = {
    users: [],
    acknowledged: new Set(),
    unacknowledged: new Set(),
    cdcRows: new Set(),
    deleted: new Set(),
    httpEvents: 0,
    httpRetries: 0,
    refused: [],
    cdcStatements: 0,
    cdcRetries: 0,
  };
  let nextUser = 0;
  const auth = `Basic ${Buffer.from(`${o.writeKey}:`).toString('base64')}`;

  async function postBatch(batch: Record<string, unknown>[]): Promise<boolean> {
    const ids = batch.map((m) => String(m.messageId));
    for (const id of ids) stats.unacknowledged.add(id);
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) {
        stats.httpRetries++;
        if (Date.now() > o.deadline()) return false;
        await sleep(Math.min(2000, 200 * attempt));
      }
      try {
        const res = await fetch(`${o.ingestUrl()}/v1/batch`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: auth },
          body: JSON.stringify({ batch }),
          signal: AbortSignal.timeout(15_000),
        });
        const text = await res.text();
        if (res.status === 200) {
          for (const id of ids) {
            stats.unacknowledged.delete(id);
            stats.acknowledged.add(id);
          }
          return true;
        }
        // 429 and 5xx are the server's "later"; any other 4xx refuses a valid event.
        if (res.status >= 400 && res.status < 500 && res.status !== 429) {
          stats.refused.push(`HTTP ${res.status}: ${text.slice(0, 300)}`);
          return false;
        }
      } catch {
        // Ingest is down or restarting: retry.
      }
    }
  }

  async function httpUser(index: number): Promise<void> {
    const rnd = stream(o.seed, `user-${index}`);
    const userId = `${o.runTag}-h${index}`;
    const user: WorkloadUser = {
      userId,
      email: `${userId}@example.com`,
      origin: 'http',
      plan: rnd() < 0.6 ? 'trial' : 'pro',
      optedIn: rnd() < 0.8,
    };
    stats.users.push(user);
    if (user.optedIn) await o.optIn(userId);
    let n = 0;
    let last = 0;
    const message = (m: Record<string, unknown>) => {
      // Timestamps strictly increase per user: the engine and the reference see one order.
      last = Math.max(Date.now(), last + 1);
      return {
        ...m,
        userId,
        messageId: `${userId}-m${n++}`,
        timestamp: new Date(last).toISOString(),
      };
    };
    const messages = [
      message({
        type: 'identify',
        traits: { email: user.email, plan: user.plan, firstName: pick(rnd, NAMES) },
      }),
      message({ type: 'track', event: 'user_registered', properties: { method: 'email' } }),
    ];
    const more = between(rnd, 2, 9);
    for (let i = 0; i < more; i++) {
      const r = rnd();
      if (r < 0.45)
        messages.push(
          message({
            type: 'track',
            event: 'Feature Used',
            properties: { feature: pick(rnd, FEATURES) },
          }),
        );
      else if (r < 0.7)
        messages.push(
          message({
            type: 'track',
            event: 'order_completed',
            properties: { amount: between(rnd, 5, 120), currency: 'EUR' },
          }),
        );
      else if (r < 0.85)
        messages.push(message({ type: 'page', name: pick(rnd, ['pricing', 'docs']) }));
      else messages.push(message({ type: 'track', event: 'app_opened', properties: {} }));
    }
    // The user's events in one to three batches, one after the other.
    const cuts = between(rnd, 1, 3);
    const size = Math.ceil(messages.length / cuts);
    for (let i = 0; i < messages.length; i += size) {
      const batch = messages.slice(i, i + size);
      stats.httpEvents += batch.length;
      if (!(await postBatch(batch))) return;
      await sleep(between(rnd, 20, 250));
    }
  }

  async function cdcUser(index: number): Promise<void> {
    const rnd = stream(o.seed, `cdc-user-${index}`);
    const userId = `${o.runTag}-c${index}`;
    const plan = rnd() < 0.6 ? 'trial' : 'pro';
    const user: WorkloadUser = {
      userId,
      email: `${userId}@example.com`,
      origin: 'cdc',
      plan,
      optedIn: rnd() < 0.8,
    };
    // Some users are deleted (right to be forgotten): only pro users, so that no delayed trial
    // nudge races the erasure (whether a timer fires before a deletion that the engine reads
    // late depends on the wall clock, not on the events).
    const deletes = plan === 'pro' && rnd() < 0.3;
    stats.users.push(user);
    if (user.optedIn) await o.optIn(userId);
    const statements = [
      `INSERT INTO ${o.schema}.users (id, email, first_name, plan, signup_source) VALUES ('${userId}', '${user.email}', '${pick(rnd, NAMES)}', '${user.plan}', 'chaos') ON CONFLICT (id) DO NOTHING`,
    ];
    if (rnd() < 0.3)
      statements.push(`UPDATE ${o.schema}.users SET email_verified = true WHERE id = '${userId}'`);
    if (deletes) statements.push(`DELETE FROM ${o.schema}.users WHERE id = '${userId}'`);
    for (const [i, sql] of statements.entries()) {
      for (let attempt = 0; ; attempt++) {
        try {
          await psql(o.postgresUrl, sql);
          stats.cdcStatements++;
          if (i === 0) stats.cdcRows.add(userId);
          if (sql.startsWith('DELETE')) stats.deleted.add(userId);
          break;
        } catch (err) {
          stats.cdcRetries++;
          if (Date.now() > o.deadline()) {
            o.log(`cdc: giving up on ${userId}: ${(err as Error).message}`);
            return;
          }
          await sleep(500);
        }
      }
      await sleep(between(rnd, 100, 600));
    }
  }

  async function session(): Promise<void> {
    while (!o.done()) {
      const index = nextUser++;
      await httpUser(index);
      if (index % o.cdcEvery === 0) await cdcUser(index / o.cdcEvery);
      if (o.userPauseMs) await sleep(o.userPauseMs);
    }
  }

  const finished = Promise.all(Array.from({ length: o.sessions }, () => session())).then(
    () => undefined,
  );
  return { stats, finished };
}
