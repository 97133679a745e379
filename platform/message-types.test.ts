import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkMessageTypes, loadMessageTypes, readMessageTypes } from './message-types.ts';

const type = (over: Record<string, unknown> = {}) => ({
  id: 'tips',
  label: 'Tips',
  description: 'How-tos.',
  category: 'marketing',
  optIn: true,
  switchable: true,
  channels: { email: false },
  ...over,
});

const errorsOf = (content: unknown) => {
  const res = checkMessageTypes(content, 'mt.json');
  return res.ok ? [] : res.errors.map((e) => `${e.file}:${e.path}: ${e.message}`);
};

describe('message types file: every problem as file:jsonpath: message', () => {
  it.each([
    ['not an object of types', [], 'mt.json:$: expected object'],
    ['types missing', {}, 'mt.json:$.types: is required'],
    [
      'unknown top-level field',
      { types: [], kinds: [] },
      'mt.json:$.kinds: unknown field "kinds"; the file holds {"types": [...]}',
    ],
    [
      'a field missing',
      { types: [(({ label: _, ...rest }) => rest)(type())] },
      'mt.json:$.types[0].label: is required',
    ],
    [
      'an unknown field of a type',
      { types: [type({ optin: true })] },
      'mt.json:$.types[0].optin: unknown field "optin"; fields of a type: id, label, description, category, optIn, switchable, channels',
    ],
    [
      'a bad id',
      { types: [type({ id: 'Product News' })] },
      'mt.json:$.types[0].id: invalid id "Product News": lower case letters, digits and _, starting with a letter (e.g. "product_news")',
    ],
    [
      'a category that is not one',
      { types: [type({ category: 'custom' })] },
      'mt.json:$.types[0].category: "custom" is not allowed: use "marketing" or "transactional"',
    ],
    [
      'an unknown channel',
      { types: [type({ channels: { mail: false } })] },
      'mt.json:$.types[0].channels.mail: unknown channel "mail" (one of email, inapp, webhook, sms, push)',
    ],
    [
      'no channel',
      { types: [type({ channels: {} })] },
      'mt.json:$.types[0].channels: name at least one channel the type is sent on, e.g. {"email": true}',
    ],
    [
      'a duplicate id',
      { types: [type(), type()] },
      'mt.json:$.types[1].id: duplicate message type "tips" (also at $.types[0].id)',
    ],
    [
      'an opt-in type on by default',
      { types: [type({ channels: { email: false, push: true } })] },
      'mt.json:$.types[0].channels.push: an opt-in type is off until the user opts in: set push to false (or "optIn": false to send it by default)',
    ],
    [
      'an opt-in type the user cannot switch',
      { types: [type({ switchable: false })] },
      'mt.json:$.types[0].switchable: an opt-in type must be switchable: the user opts in to it where they switch it (set "switchable": true, or "optIn": false)',
    ],
  ])('%s', (_name, content, expected) => {
    expect(errorsOf(content)).toContain(expected);
  });

  it('accepts the shipped declaration and looks types up by id, in the file order', () => {
    const types = loadMessageTypes('rules/message-types.json');
    expect(types.list.map((t) => t.id)).toEqual([
      'product_news',
      'tips',
      'digest',
      'offers',
      'billing',
      'security',
    ]);
    expect(types.get('tips')).toMatchObject({
      optIn: true,
      switchable: true,
      category: 'marketing',
    });
    expect(types.get('billing')).toMatchObject({ switchable: false, category: 'transactional' });
    expect(types.get('nope')).toBeUndefined();
  });

  it('a missing file and invalid JSON are errors at $; loading refuses to start with every line', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'lc-mt-'));
    expect(readMessageTypes(path.join(dir, 'none.json'))).toMatchObject({
      ok: false,
      errors: [{ path: '$', message: 'message types file not found (LC_MESSAGE_TYPES_FILE)' }],
    });
    const bad = path.join(dir, 'bad.json');
    writeFileSync(bad, '{"types": [');
    expect(readMessageTypes(bad)).toMatchObject({ ok: false, errors: [{ path: '$' }] });
    const wrong = path.join(dir, 'wrong.json');
    writeFileSync(wrong, JSON.stringify({ types: [type({ category: 'x' }), type()] }));
    expect(() => loadMessageTypes(wrong)).toThrow(
      `${wrong}:$.types[0].category: "x" is not allowed: use "marketing" or "transactional"`,
    );
  });
});
