// From a checked message to the send command delivery gets: the template and its channels
// checked against the same templates delivery renders, the user's traits taken from the engine
// (UserDirectory) with the request's data laid over them, a raw address given its recipient
// id, and a sendId that a retry with the same Idempotency-Key gets again.
import { randomUUID } from 'node:crypto';
import type { Channel, SendCommand } from '../../platform/contracts.ts';
import { ErrorCodes } from '../../platform/errors.ts';
import { deterministicId } from '../../platform/ids.ts';
import type { UserDirectory } from '../../platform/users.ts';
import type { TemplateRenderer } from '../templates/index.ts';
import { overlay } from '../templates/routes.ts';
import {
  PRIORITY_VALUE,
  recipientIdOf,
  refusal,
  type CheckedMessage,
  type SendRefusal,
} from './request.ts';

/** The rule id of every send made through the send API (the `sends` table's `rule_id`). */
export const API_RULE_ID = 'api';
/** The trigger type of API sends (`triggered_by_event_type`). */
export const API_EVENT_TYPE = 'api.send';

/** What the send API needs of the templates: the renderer's registry, as delivery renders with it. */
export type TemplateRegistry = Pick<TemplateRenderer, 'has' | 'channels' | 'names'>;

/** Who asked and under which Idempotency-Key: the key is scoped to the credential. */
export interface RequestIdentity {
  /** The credential's principal id (`key_...`, `jwt:<sub>`, `admin-token`). */
  principal: string;
  idempotencyKey: string | null;
  /** Fastify's request id: the trigger id of sends made without an Idempotency-Key. */
  requestId: string;
}

/**
 * The sendId of message `index` of a request: with an Idempotency-Key, derived from the
 * credential, the key and the index, so a retry (even one whose first try was lost mid-way)
 * publishes the same sendIds and delivery's claims send each once; without one, random.
 */
export function apiSendId(identity: RequestIdentity, index: number): string {
  return identity.idempotencyKey === null
    ? randomUUID()
    : deterministicId('api-send', identity.principal, identity.idempotencyKey, String(index));
}

function triggerId(identity: RequestIdentity): string {
  return identity.idempotencyKey === null
    ? identity.requestId
    : deterministicId('api-request', identity.principal, identity.idempotencyKey);
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/** Edit distance, for the template names close to a misspelt one. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(above + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** Up to three known names within a third of the name's length in edits (at least 2), closest first. */
export function closeNames(name: string, known: readonly string[]): string[] {
  const limit = Math.max(2, Math.floor(name.length / 3));
  const lower = name.toLowerCase();
  return known
    .map((k) => ({ k, d: distance(lower, k.toLowerCase()) }))
    .filter(({ k, d }) => d <= limit || k.toLowerCase().includes(lower))
    .sort((a, b) => a.d - b.d || a.k.localeCompare(b.k))
    .slice(0, 3)
    .map(({ k }) => k);
}

/** The template exists and has content for every channel; the channels to use. */
function templateChannels(
  m: CheckedMessage,
  templates: TemplateRegistry,
  prefix: string,
): Channel[] | SendRefusal {
  if (!templates.has(m.template)) {
    const close = closeNames(m.template, templates.names());
    return refusal(
      ErrorCodes.UnknownTemplate,
      `no template "${m.template}"${close.length > 0 ? `; did you mean ${close.map((n) => `"${n}"`).join(', ')}?` : ''} (GET /v1/templates lists every template)`,
      `${prefix}template`,
    );
  }
  const available = templates.channels(m.template);
  const wanted =
    m.channels ??
    ('raw' in m.recipient
      ? [m.recipient.raw.kind === 'email' ? 'email' : 'sms']
      : available.filter((c) => c !== 'webhook'));
  const missing = wanted.filter((c) => !available.includes(c));
  if (missing.length > 0)
    return refusal(
      ErrorCodes.TemplateChannel,
      `template "${m.template}" has no ${missing.join(' or ')} content (it has ${available.join(', ')}): add templates/${m.template}/${missing[0]}.<locale>.hbs or send on the channels it has`,
      `${prefix}${m.channels ? 'channels' : 'template'}`,
    );
  if (wanted.length === 0)
    return refusal(
      ErrorCodes.TemplateChannel,
      `template "${m.template}" has content for no channel but webhook; name the channels to send on`,
      `${prefix}channels`,
    );
  return wanted;
}

export interface PlanDeps {
  templates: TemplateRegistry;
  users: UserDirectory;
}

/**
 * The send command of message `index`, or why it cannot be sent. `createdAt` is when the
 * request was accepted.
 */
export async function planSend(
  m: CheckedMessage,
  index: number,
  identity: RequestIdentity,
  deps: PlanDeps,
  createdAt: number,
  prefix = '',
): Promise<SendCommand | SendRefusal> {
  const channels = templateChannels(m, deps.templates, prefix);
  if (!Array.isArray(channels)) return channels;
  const requested = isPlainObject(m.data.user) ? m.data.user : {};
  let userId: string;
  let user: Record<string, unknown>;
  if ('raw' in m.recipient) {
    const { raw } = m.recipient;
    userId = recipientIdOf(raw);
    user = { ...requested, [raw.kind]: raw.address };
  } else {
    userId = m.recipient.userId;
    const profile = await deps.users.profile(userId);
    if (!profile)
      return refusal(
        ErrorCodes.UnknownUser,
        `no user "${userId}": the engine has no state for this id (never identified, or erased). Send an identify with their traits first and retry, or send to a raw address with to`,
        `${prefix}userId`,
      );
    // The request adds to the user's traits for this message; their addresses stay theirs (checked in request.ts).
    user = overlay(profile.traits, requested);
  }
  const send: SendCommand = {
    sendId: apiSendId(identity, index),
    ruleId: API_RULE_ID,
    userId,
    category: m.category,
    priority: PRIORITY_VALUE[m.priority],
    template: m.template,
    channels,
    variant: null,
    holdout: false,
    triggeredBy: { eventId: triggerId(identity), eventType: API_EVENT_TYPE },
    createdAt,
    expiresAt: null,
    data: { ...overlay({}, m.data), user },
    origin: `api:${identity.principal}`,
  };
  if (m.messageType !== undefined) send.messageType = m.messageType;
  return send;
}
