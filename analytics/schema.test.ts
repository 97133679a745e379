import { describe, expect, it } from 'vitest';
import { DELIVERIES, EVENTS, MESSAGES, SENDS } from '../test/support/analytics-fixtures.ts';
import {
  ADDED_COLUMNS,
  assertDatabaseName,
  bodyTtlClause,
  deliveryRow,
  eventRow,
  MESSAGE_BODY_COLUMNS,
  messageRow,
  payloadTtlClause,
  sendRow,
  supportsColumnTtl,
  tableDdl,
} from './schema.ts';

describe('payload TTL support', () => {
  it.each([
    ['18.16.1', false],
    ['19.5.4.22', false],
    ['19.6.2.11', true],
    ['19.17.1', true],
    ['24.3.1.2672', true],
    ['26.7.2.1', true],
    ['garbage', false],
  ])('%s -> %s', (version, ok) => {
    expect(supportsColumnTtl(version)).toBe(ok);
  });

  it('the DDL carries the TTL on the payload column only when asked', () => {
    expect(tableDdl('lc').sends).not.toMatch(/TTL/);
    expect(tableDdl('lc', 30).sends).toMatch(
      /data String TTL created_at \+ toIntervalDay\(30\),\n/,
    );
    expect(tableDdl('lc', 30).events).not.toMatch(/TTL/);
    expect(() => payloadTtlClause(0)).toThrow(/positive/);
  });

  it("the message log's body columns carry the body TTL, as many days as configured; its metadata none", () => {
    const ddl = tableDdl('lc', 30, 7).messages;
    for (const column of MESSAGE_BODY_COLUMNS)
      expect(ddl).toContain(`\n  ${column} String TTL ts + toIntervalDay(7),\n`);
    expect(ddl.match(/TTL/g)).toHaveLength(MESSAGE_BODY_COLUMNS.length);
    expect(ddl).toMatch(/\n {2}recipient String,\n/);
    expect(tableDdl('lc', 30, 90).messages).toContain('html String TTL ts + toIntervalDay(90)');
    // Without it (ClickHouse before 19.6): no TTL at all, the sink empties old bodies itself.
    expect(tableDdl('lc', undefined, undefined).messages).not.toMatch(/TTL/);
    // The payload TTL of sends and the body TTL are set apart.
    expect(tableDdl('lc', 30, 7).sends).toMatch(/toIntervalDay\(30\)/);
    expect(() => bodyTtlClause(0)).toThrow(/positive/);
    expect(ddl).toMatch(/PARTITION BY toYYYYMM\(ts\)\nORDER BY \(user_id, id\)$/);
  });

  it('every table is a ReplacingMergeTree keyed by its id, partitioned by month', () => {
    const ddl = tableDdl('lc');
    expect(ddl.events).toMatch(
      /ENGINE = ReplacingMergeTree\nPARTITION BY toYYYYMM\(ts\)\nORDER BY \(type, user_id, id\)$/,
    );
    expect(ddl.sends).toMatch(
      /PARTITION BY toYYYYMM\(created_at\)\nORDER BY \(rule_id, user_id, send_id\)$/,
    );
    expect(ddl.deliveries).toMatch(
      /PARTITION BY toYYYYMM\(ts\)\nORDER BY \(rule_id, send_id, id\)$/,
    );
  });

  it('a new sends table ends with the columns added since the first release, as an altered one does', () => {
    const columns = tableDdl('lc')
      .sends.split('\n')
      .filter((l) => /^ {2}\w+ /.test(l))
      .map((l) => l.trim().replace(/,$/, ''));
    const added = ADDED_COLUMNS.sends.map((c) => `${c.name} ${c.type}`);
    expect(columns.slice(-added.length)).toEqual(added);
    expect(Object.keys(sendRow(SENDS[0]!)).slice(-added.length)).toEqual(
      ADDED_COLUMNS.sends.map((c) => c.name),
    );
  });

  it('refuses database names that are not plain identifiers', () => {
    expect(() => tableDdl('lc; DROP TABLE x')).toThrow(/plain ClickHouse database name/);
    expect(() => assertDatabaseName('lc_test_1')).not.toThrow();
  });
});

describe('rows', () => {
  it('an event keeps ms and second times and JSON payloads; absent parts are empty strings', () => {
    const e = { ...EVENTS[0]!, ts: 1_741_600_000_123, traits: { plan: 'pro' } };
    expect(eventRow(e)).toEqual({
      id: e.id,
      user_id: e.userId,
      anonymous_id: '',
      type: e.type,
      ts_ms: 1_741_600_000_123,
      ts: 1_741_600_000,
      received_at_ms: e.receivedAt,
      source: 'http:web',
      properties: JSON.stringify(e.properties),
      traits: '{"plan":"pro"}',
      context: '',
    });
  });

  it('a send keeps holdout, variant and goal; no goal is an empty event and a zero window', () => {
    const treated = SENDS.find((s) => !s.holdout && s.goal)!;
    const noGoal = SENDS.find((s) => !s.goal)!;
    expect(sendRow(treated)).toMatchObject({
      holdout: 0,
      variant: 'a',
      goal_event: 'subscription_started',
      goal_within_ms: treated.goal!.withinMs,
      expires_at_ms: 0,
      campaign_id: '',
    });
    expect(
      sendRow({ ...treated, holdout: true, variant: null, expiresAt: 5000, campaignId: 'c1' }),
    ).toMatchObject({ holdout: 1, variant: '', expires_at_ms: 5000, campaign_id: 'c1' });
    expect(sendRow(noGoal)).toMatchObject({ goal_event: '', goal_within_ms: 0 });
  });

  it('a message-log record keeps its content as strings and JSON; absent values are empty', () => {
    const m = MESSAGES[0]!;
    expect(messageRow(m)).toEqual({
      id: m.id,
      send_id: m.sendId,
      user_id: m.userId,
      rule_id: m.ruleId,
      campaign_id: '',
      category: 'marketing',
      channel: 'email',
      template: m.template,
      template_version: 0,
      locale: 'en',
      recipient: m.to,
      subject: m.subject,
      html: m.html,
      text: m.text,
      content: '{}',
      data: JSON.stringify(m.data),
      origin: '',
      ts_ms: m.ts,
      ts: Math.floor(m.ts / 1000),
    });
    expect(
      messageRow({ ...m, templateVersion: 3, to: null, html: null, origin: 'resend:s1' }),
    ).toMatchObject({ template_version: 3, recipient: '', html: '', origin: 'resend:s1' });
  });

  it('a send keeps who asked and the template version it pinned; rule sends have neither', () => {
    const rule = SENDS[0]!;
    expect(sendRow(rule)).toMatchObject({ origin: '', template_version: 0 });
    expect(sendRow({ ...rule, origin: 'api:key_1', templateVersion: 4 })).toMatchObject({
      origin: 'api:key_1',
      template_version: 4,
    });
  });

  it('a delivery outcome without channel, provider or reason stores empty strings', () => {
    const d = DELIVERIES.find((x) => x.status === 'opened')!;
    expect(deliveryRow({ ...d, channel: null })).toMatchObject({
      channel: '',
      provider: '',
      reason: '',
      status: 'opened',
      attempt: 1,
      ts: Math.floor(d.ts / 1000),
    });
  });
});
