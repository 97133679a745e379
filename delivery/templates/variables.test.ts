import Handlebars from 'handlebars';
import { describe, expect, it } from 'vitest';
import { loadTemplateFiles, type TemplateError } from './loader.ts';
import { unprovidedVariables, variableUses } from './variables.ts';

const check = (files: Record<string, string>) => {
  const errors: TemplateError[] = [];
  const tpl = loadTemplateFiles(Handlebars, 'promo', 'promo', files, { strict: true }, errors);
  expect(errors).toEqual([]);
  return unprovidedVariables(Handlebars, tpl);
};
const sample = JSON.stringify({
  user: { firstName: 'Ada', plan: 'pro' },
  event: { type: 'order', properties: { items: [{ name: 'Pen', price: 2 }] } },
});

describe('the variable walk', () => {
  it('resolves paths through each, with, block params, ../ and @root', () => {
    const uses = variableUses(
      Handlebars,
      '{{#each event.properties.items as |item|}}{{item.name}} {{price}} {{../user.plan}} {{@root.rule.id}} {{@index}}{{/each}}{{#with user}}{{firstName}}{{/with}}',
    );
    expect(uses.map((u) => [u.path, u.when])).toEqual([
      ['event.properties.items', 'guarded'],
      ['event.properties.items.[].name', 'fails'],
      ['event.properties.items.[].price', 'fails'],
      ['user.plan', 'fails'],
      ['rule.id', 'fails'],
      ['user', 'guarded'],
      ['user.firstName', 'fails'],
    ]);
  });

  it('finds in every branch what neither the sample nor the data every message gets provides', () => {
    const { errors, warnings } = check({
      'sample.json': sample,
      'email.en.hbs': [
        '---',
        'subject: Hi {{user.fristName}}',
        '---',
        '<p>{{#if (eq user.plan "pro")}}Since {{formatDate user.proSince}}{{else}}Hi{{/if}}</p>',
        '{{#each event.properties.items}}{{name}} {{currency}}{{/each}}',
        '{{default user.nickname user.firstName}} {{user.email}} {{links.unsubscribe}}',
        '{{#if user.company}}{{user.company}}{{/if}}{{#if user.team}}{{user.team.name}}{{/if}}',
        '{{> button url=user.website}}',
      ].join('\n'),
    });
    expect(errors).toEqual([
      {
        file: 'promo/email.en.hbs',
        message: expect.stringMatching(/^subject: "user\.fristName" is not in sample\.json/),
      },
      { file: 'promo/email.en.hbs', message: expect.stringMatching(/^line 4: "user\.proSince"/) },
      {
        file: 'promo/email.en.hbs',
        message: expect.stringMatching(/^line 5: "event\.properties\.items\[\]\.currency"/),
      },
      { file: 'promo/email.en.hbs', message: expect.stringMatching(/^line 7: "user\.team\.name"/) },
    ]);
    expect(warnings).toEqual([
      {
        file: 'promo/email.en.hbs',
        message: expect.stringMatching(/^line 8: "user\.website" .*the partial gets nothing/),
      },
    ]);
  });

  it('takes an object in the sample as what {{#each}} walks over its values', () => {
    const files = (sampleData: unknown) => ({
      'sample.json': JSON.stringify(sampleData),
      'email.en.hbs':
        '---\nsubject: Hi\n---\n{{#each event.properties.tags}}<b>{{@key}}: {{this}}</b>{{/each}}',
    });
    expect(check(files({ event: { properties: { tags: { size: 'L' } } } })).errors).toEqual([]);
    expect(check(files({ event: { properties: { tags: 'L' } } })).errors).toEqual([
      expect.objectContaining({
        message: expect.stringContaining('"event.properties.tags[]" is not in sample.json') as unknown,
      }),
    ]);
  });
});
