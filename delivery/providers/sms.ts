// SMS over a Twilio-shaped REST API: POST form-encoded To/From/Body to
// `<base>/2010-04-01/Accounts/<sid>/Messages.json` with HTTP Basic auth (sid:token).
// Twilio's documented error codes decide whether the number is dead.
import type { Logger } from 'pino';
import { networkFailure, readJson, transientStatus } from './http-result.ts';
import type { OutgoingMessage, Provider, ProviderResult } from '../provider.ts';

export interface SmsProviderOptions {
  name?: string;
  apiUrl: string;
  accountSid: string;
  authToken: string;
  /** Sender number (E.164) or messaging service SID (`MG...`). */
  from: string;
  timeoutMs?: number;
}

/** Twilio error codes meaning the number can never receive this SMS. */
const INVALID_NUMBER = new Set([21211, 21214, 21217, 21401, 21407, 21421, 21612, 21614]);
/** The recipient replied STOP: sending again is against the carrier rules. */
const OPTED_OUT = 21610;

export function createSmsProvider(
  opts: SmsProviderOptions,
  deps: { logger: Logger; fetch?: typeof fetch },
): Provider {
  const name = opts.name ?? 'sms';
  const doFetch = deps.fetch ?? fetch;
  const log = deps.logger.child({ component: 'provider', provider: name });
  const endpoint = `${opts.apiUrl.replace(/\/+$/, '')}/2010-04-01/Accounts/${encodeURIComponent(opts.accountSid)}/Messages.json`;
  const auth = `Basic ${Buffer.from(`${opts.accountSid}:${opts.authToken}`).toString('base64')}`;

  return {
    name,
    channel: 'sms',
    // The request's own timeout fires first; the pipeline's deadline is the backstop.
    deadlineMs: (opts.timeoutMs ?? 10_000) + 5_000,
    async send(message: OutgoingMessage): Promise<ProviderResult> {
      const to = message.recipient.phone;
      if (!to)
        return {
          status: 'permanent',
          error: 'recipient has no phone number',
          suppress: 'invalid_address',
        };
      if (!/^\+[1-9]\d{6,14}$/.test(to.replace(/[\s().-]/g, '')))
        return {
          status: 'permanent',
          error: 'phone number is not in E.164 form (+<country><number>)',
          suppress: 'invalid_address',
        };
      const body = message.content.body ?? message.content.text;
      if (!body) return { status: 'permanent', error: 'rendered SMS has no body' };
      const form = new URLSearchParams({ To: to.replace(/[\s().-]/g, ''), Body: body });
      form.set(opts.from.startsWith('MG') ? 'MessagingServiceSid' : 'From', opts.from);
      let res: Response;
      try {
        res = await doFetch(endpoint, {
          method: 'POST',
          headers: {
            Authorization: auth,
            'Content-Type': 'application/x-www-form-urlencoded',
            'I-Twilio-Idempotency-Token': message.sendId,
          },
          body: form.toString(),
          redirect: 'error',
          signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
        });
      } catch (err) {
        return networkFailure(err);
      }
      const json = await readJson(res).catch(() => ({}) as Record<string, unknown>);
      if (res.ok)
        return typeof json.sid === 'string'
          ? { status: 'sent', providerMessageId: json.sid }
          : { status: 'sent' };
      const code = typeof json.code === 'number' ? json.code : Number(json.code);
      const detail = `${Number.isFinite(code) ? `${code} ` : ''}${typeof json.message === 'string' ? json.message : res.statusText}`;
      const transient = transientStatus(res.status, res.headers.get('retry-after'), detail);
      if (transient) return transient;
      log.debug({ sendId: message.sendId, status: res.status, code }, 'sms refused');
      if (INVALID_NUMBER.has(code))
        return { status: 'permanent', error: detail, suppress: 'invalid_address' };
      if (code === OPTED_OUT)
        return {
          status: 'permanent',
          error: `recipient opted out (STOP): ${detail}`,
          suppress: 'complaint',
        };
      return { status: 'permanent', error: `HTTP ${res.status}: ${detail}` };
    },
  };
}
