// Message types (product news, tips, digests, billing...): the one declaration, edited by
// product owners in rules/message-types.json, that rules, campaigns and the send API name, the
// preference page offers and delivery enforces. A contract between rooms, so it lives here and
// every process reads the same file, checked at start with `file:jsonpath: message` errors.
import { readFileSync } from 'node:fs';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { Channel } from './contracts.ts';
import { ErrorCodes, LifecycleError } from './errors.ts';

const CHANNEL_NAMES = ['email', 'inapp', 'webhook', 'sms', 'push'] as const;

export const MESSAGE_TYPE_ID = '^[a-z][a-z0-9_]{0,63}$';

const Str = (description: string, maxLength: number) =>
  Type.String({ minLength: 1, maxLength, description });

export const MessageTypeSchema = Type.Object(
  {
    id: Type.String({
      pattern: MESSAGE_TYPE_ID,
      description:
        'What rules, campaigns and the send API name (`messageType`), and what preferences are stored under: lower case letters, digits and _ (e.g. `product_news`). Do not rename a type users have chosen for.',
    }),
    label: Str('What the preference page calls it, e.g. "Tips and tutorials".', 80),
    description: Str('One sentence under the label on the preference page.', 300),
    category: Type.Union([Type.Literal('marketing'), Type.Literal('transactional')], {
      description:
        "The consent it needs first: `marketing` (the user's marketing opt-in for the channel) or `transactional` (none).",
    }),
    optIn: Type.Boolean({
      description:
        'true: sent only to users who opted in to this type on the channel (a ticked box at signup, the preference page). false: on by default (see `channels`) once the category consent holds.',
    }),
    switchable: Type.Boolean({
      description:
        'Whether a user may switch it off. false for messages a user must get (billing, security): preferences do not apply to them, and the preference page does not list them.',
    }),
    channels: Type.Object(
      Object.fromEntries(CHANNEL_NAMES.map((c) => [c, Type.Optional(Type.Boolean())])),
      {
        additionalProperties: false,
        minProperties: 1,
        description:
          'The channels the type is sent on, each with whether it is on by default (when the user chose nothing), e.g. {"email": true, "inapp": true}. An opt-in type is off by default everywhere. A send on a channel not listed here is not sent (unless the type is not switchable).',
      },
    ),
  },
  { additionalProperties: false },
);
export type MessageType = Static<typeof MessageTypeSchema> & {
  channels: Partial<Record<Channel, boolean>>;
};

export const MessageTypesFileSchema = Type.Object(
  {
    $schema: Type.Optional(
      Type.String({ description: 'Path or URL of this JSON Schema, for editors.' }),
    ),
    types: Type.Array(MessageTypeSchema, {
      description: 'Every message type, in the order the preference page lists them.',
    }),
  },
  { additionalProperties: false, title: 'Message types' },
);

/** One problem of the file: where (`$.types[2].category`) and what to fix. */
export interface MessageTypesError {
  file: string;
  path: string;
  message: string;
}

export interface MessageTypes {
  /** In the file's order. */
  readonly list: readonly MessageType[];
  get(id: string): MessageType | undefined;
}

export function messageTypesOf(list: readonly MessageType[]): MessageTypes {
  const byId = new Map(list.map((t) => [t.id, t]));
  return Object.freeze({ list: Object.freeze([...list]), get: (id: string) => byId.get(id) });
}

/** No types declared: every send is decided by its category alone (today's behaviour). */
export const NO_MESSAGE_TYPES: MessageTypes = messageTypesOf([]);

function jsonPath(pointer: string): string {
  let out = '$';
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (/^[0-9]+$/.test(key)) out += `[${key}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key)) out += `.${key}`;
    else out += `[${JSON.stringify(key)}]`;
  }
  return out;
}

const TYPE_FIELDS = Object.keys(MessageTypeSchema.properties);

/** Checks the file's parsed content; every problem is reported, each at its JSON path. */
export function checkMessageTypes(
  content: unknown,
  file: string,
): { ok: true; types: MessageTypes } | { ok: false; errors: MessageTypesError[] } {
  const errors: MessageTypesError[] = [];
  const push = (path: string, message: string) => errors.push({ file, path, message });
  const seen = new Set<string>();
  for (const e of Value.Errors(MessageTypesFileSchema, content)) {
    const at = jsonPath(e.path);
    if (seen.has(at)) continue;
    seen.add(at);
    const name = e.path.split('/').pop() ?? '';
    if (e.message === 'Expected required property') push(at, 'is required');
    else if (e.message === 'Unexpected property')
      push(
        at,
        /^\/types\/[0-9]+\/[^/]+$/.test(e.path)
          ? `unknown field "${name}"; fields of a type: ${TYPE_FIELDS.join(', ')}`
          : /^\/types\/[0-9]+\/channels\//.test(e.path)
            ? `unknown channel "${name}" (one of ${CHANNEL_NAMES.join(', ')})`
            : `unknown field "${name}"; the file holds {"types": [...]}`,
      );
    else if (name === 'id' && typeof e.value === 'string')
      push(
        at,
        `invalid id ${JSON.stringify(e.value)}: lower case letters, digits and _, starting with a letter (e.g. "product_news")`,
      );
    else if (name === 'channels' && e.value !== null && typeof e.value === 'object')
      push(at, 'name at least one channel the type is sent on, e.g. {"email": true}');
    else if (name === 'category')
      push(at, `${JSON.stringify(e.value)} is not allowed: use "marketing" or "transactional"`);
    else push(at, e.message.charAt(0).toLowerCase() + e.message.slice(1));
  }
  if (errors.length > 0) return { ok: false, errors };
  const list = (content as { types: MessageType[] }).types;
  const ids = new Map<string, number>();
  list.forEach((t, i) => {
    const at = `$.types[${i}]`;
    const prev = ids.get(t.id);
    if (prev !== undefined)
      push(`${at}.id`, `duplicate message type "${t.id}" (also at $.types[${prev}].id)`);
    else ids.set(t.id, i);
    if (t.optIn && !t.switchable)
      push(
        `${at}.switchable`,
        'an opt-in type must be switchable: the user opts in to it where they switch it (set "switchable": true, or "optIn": false)',
      );
    if (t.optIn)
      for (const [channel, on] of Object.entries(t.channels))
        if (on)
          push(
            `${at}.channels.${channel}`,
            `an opt-in type is off until the user opts in: set ${channel} to false (or "optIn": false to send it by default)`,
          );
  });
  if (errors.length > 0) return { ok: false, errors };
  const types = list.map((t) => {
    const copy = structuredClone(t) as MessageType & { $schema?: string };
    return Object.freeze(copy);
  });
  return { ok: true, types: messageTypesOf(types) };
}

/** Reads and checks the file; a missing file or invalid JSON is an error at `$` too. */
export function readMessageTypes(
  file: string,
): { ok: true; types: MessageTypes } | { ok: false; errors: MessageTypesError[] } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    return {
      ok: false,
      errors: [
        {
          file,
          path: '$',
          message: missing
            ? 'message types file not found (LC_MESSAGE_TYPES_FILE)'
            : `cannot read: ${(err as Error).message}`,
        },
      ],
    };
  }
  let content: unknown;
  try {
    content = JSON.parse(text);
  } catch (err) {
    return {
      ok: false,
      errors: [{ file, path: '$', message: `invalid JSON: ${(err as Error).message}` }],
    };
  }
  return checkMessageTypes(content, file);
}

/** What a process does at start: the checked types, or an error listing every problem as `file:jsonpath: message`. */
export function loadMessageTypes(file: string): MessageTypes {
  const res = readMessageTypes(file);
  if (res.ok) return res.types;
  throw new LifecycleError(
    ErrorCodes.MessageTypesInvalid,
    `message types in ${file} are invalid:\n${res.errors.map((e) => `${e.file}:${e.path}: ${e.message}`).join('\n')}`,
  );
}
