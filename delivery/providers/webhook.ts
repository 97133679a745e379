// Webhook channel: POSTs the message as JSON to the recipient's endpoint, signed with
// HMAC-SHA256 over `<timestamp>.<body>` (header `X-Lifecycle-Signature: t=<unix s>,v1=<hex>`).
// Redirects are never followed, private targets are refused (see ./ssrf.ts), and the
// connection goes to the address that was checked.
//
// Verifying on the receiving side (any language): take `t` and `v1` from the header,
// compute hex(HMAC_SHA256(secret, t + "." + rawBody)), compare in constant time, and
// reject when `t` is more than 5 minutes from now (replays). `verifyWebhookSignature` below
// does exactly that.
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import type { Logger } from 'pino';
import { ForbiddenTargetError, resolveTarget, type Resolver } from './ssrf.ts';
import type { OutgoingMessage, Provider, ProviderResult } from '../provider.ts';

export const SIGNATURE_HEADER = 'X-Lifecycle-Signature';

export interface WebhookProviderOptions {
  name?: string;
  /** HMAC secret (config auth.webhookSecret). */
  secret: string;
  /** Deadline of the whole call, from name resolution to the response status. */
  timeoutMs?: number;
  /** config delivery.webhookAllowPrivate: tests and on-prem receivers. */
  allowPrivate: boolean;
  userAgent?: string;
}

export function signWebhook(secret: string, body: string, timestampSec: number): string {
  const v1 = createHmac('sha256', secret).update(`${timestampSec}.${body}`).digest('hex');
  return `t=${timestampSec},v1=${v1}`;
}

/**
 * What a receiver runs: true when the header matches the raw body and is fresh. Also how the
 * mail provider's bounce webhook is checked (delivery/tracking/routes.ts), with its own secret.
 */
export function verifyWebhookSignature(
  secret: string,
  rawBody: string | Buffer,
  header: string,
  nowMs = Date.now(),
  toleranceSec = 300,
): boolean {
  const parts = Object.fromEntries(
    header.split(',').map((kv) => kv.trim().split('=', 2) as [string, string]),
  );
  const t = Number(parts.t);
  const v1 = parts.v1;
  if (!/^\d{1,12}$/.test(parts.t ?? '') || typeof v1 !== 'string' || !/^[0-9a-f]{64}$/.test(v1))
    return false;
  if (Math.abs(nowMs / 1000 - t) > toleranceSec) return false;
  const expected = createHmac('sha256', secret).update(`${parts.t}.`).update(rawBody).digest();
  return timingSafeEqual(expected, Buffer.from(v1, 'hex'));
}

function retryAfterMs(value: string | string[] | undefined): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  const secs = Number(v);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

export function createWebhookProvider(
  opts: WebhookProviderOptions,
  deps: { logger: Logger; resolve?: Resolver; now?: () => number },
): Provider {
  const name = opts.name ?? 'webhook';
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const now = deps.now ?? Date.now;
  const log = deps.logger.child({ component: 'provider', provider: name });

  /**
   * One deadline for the whole call, name resolution included: a resolver that never answers
   * must not hold the send (and its claim) past `timeoutMs`. The lookup itself cannot be
   * cancelled; its late answer is dropped.
   */
  async function post(
    url: URL,
    body: string,
    headers: Record<string, string>,
  ): Promise<ProviderResult> {
    const expired = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<ProviderResult>((resolve) => {
      timer = setTimeout(() => {
        expired.abort();
        resolve({ status: 'retriable', error: `ETIMEDOUT: timed out after ${timeoutMs} ms` });
      }, timeoutMs);
    });
    try {
      return await Promise.race([attempt(url, body, headers, expired.signal), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  async function attempt(
    url: URL,
    body: string,
    headers: Record<string, string>,
    expired: AbortSignal,
  ): Promise<ProviderResult> {
    let target;
    try {
      target = await resolveTarget(url.hostname, {
        allowPrivate: opts.allowPrivate,
        ...(deps.resolve ? { resolve: deps.resolve } : {}),
      });
    } catch (err) {
      if (err instanceof ForbiddenTargetError)
        return { status: 'permanent', error: err.message, suppress: 'invalid_address' };
      const code = (err as { code?: string }).code;
      if (code === 'ENOTFOUND')
        return {
          status: 'permanent',
          error: `${url.hostname} does not exist`,
          suppress: 'invalid_address',
        };
      return { status: 'retriable', error: `dns: ${(err as Error).message}` };
    }
    // The deadline has already answered for this call: do not connect after it.
    if (expired.aborted) return { status: 'retriable', error: `timed out after ${timeoutMs} ms` };
    const pinned: LookupFunction = (_host, options, cb) => {
      if ((options as { all?: boolean }).all)
        (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [
          target,
        ]);
      else cb(null, target.address, target.family);
    };
    const lib = url.protocol === 'https:' ? https : http;
    return new Promise<ProviderResult>((resolve) => {
      const req = lib.request(
        url,
        {
          method: 'POST',
          headers: { ...headers, 'Content-Length': Buffer.byteLength(body) },
          lookup: pinned,
          agent: false,
          signal: expired,
        },
        (res) => {
          const status = res.statusCode ?? 0;
          // Drain (bounded) so the socket closes cleanly; the receiver's body is not needed.
          let seen = 0;
          res.on('data', (chunk: Buffer) => {
            seen += chunk.length;
            if (seen > 64 * 1024) res.destroy();
          });
          res.on('error', () => undefined);
          res.on('close', () => undefined);
          if (status >= 200 && status < 300) return resolve({ status: 'sent' });
          if (status >= 300 && status < 400)
            return resolve({
              status: 'permanent',
              error: `endpoint answered ${status} redirect; redirects are not followed`,
            });
          if (status === 408 || status === 425 || status === 429) {
            const after = retryAfterMs(res.headers['retry-after']);
            return resolve({
              status: 'retriable',
              error: `endpoint answered ${status}`,
              ...(after !== undefined ? { retryAfterMs: after } : {}),
            });
          }
          if (status === 410)
            return resolve({
              status: 'permanent',
              error: 'endpoint answered 410 Gone',
              suppress: 'invalid_address',
            });
          if (status >= 400 && status < 500)
            return resolve({ status: 'permanent', error: `endpoint answered ${status}` });
          const after = retryAfterMs(res.headers['retry-after']);
          return resolve({
            status: 'retriable',
            error: `endpoint answered ${status}`,
            ...(after !== undefined ? { retryAfterMs: after } : {}),
          });
        },
      );
      req.on('error', (err: Error & { code?: string }) => {
        if (err.code === 'ERR_TLS_CERT_ALTNAME_INVALID' || /certificate/i.test(err.message)) {
          resolve({ status: 'retriable', error: `tls: ${err.message}` });
          return;
        }
        resolve({ status: 'retriable', error: `${err.code ?? 'error'}: ${err.message}` });
      });
      req.end(body);
    });
  }

  return {
    name,
    channel: 'webhook',
    // The call's own timeout (DNS included) fires first; the pipeline's deadline is the backstop.
    deadlineMs: timeoutMs + 5_000,
    async send(message: OutgoingMessage): Promise<ProviderResult> {
      const raw = message.recipient.webhookUrl;
      if (!raw)
        return {
          status: 'permanent',
          error: 'recipient has no webhook URL',
          suppress: 'invalid_address',
        };
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        return {
          status: 'permanent',
          error: 'webhook URL is not a valid URL',
          suppress: 'invalid_address',
        };
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:')
        return {
          status: 'permanent',
          error: `webhook URL scheme ${url.protocol} is not http(s)`,
          suppress: 'invalid_address',
        };
      if (url.username || url.password)
        return {
          status: 'permanent',
          error: 'webhook URLs with credentials are refused; verify the signature instead',
          suppress: 'invalid_address',
        };
      const ts = Math.floor(now() / 1000);
      const body = JSON.stringify({
        id: message.sendId,
        type: 'lifecycle.message',
        sentAt: new Date(ts * 1000).toISOString(),
        sendId: message.sendId,
        ruleId: message.ruleId,
        category: message.category,
        userId: message.recipient.userId,
        content: message.content,
      });
      const result = await post(url, body, {
        'Content-Type': 'application/json',
        'User-Agent': opts.userAgent ?? 'lifecycle-webhook/1',
        [SIGNATURE_HEADER]: signWebhook(opts.secret, body, ts),
        'X-Lifecycle-Send-Id': message.sendId,
        'Idempotency-Key': message.sendId,
      });
      if (result.status !== 'sent')
        log.debug(
          { sendId: message.sendId, status: result.status, error: result.error },
          'webhook not delivered',
        );
      return result;
    },
  };
}
