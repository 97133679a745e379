// A campaign compiles to a rule the engine core evaluates like a rule file's: its members are
// matched against the audience on the user's real state, sent the message with the campaign's
// id, variants and holdout, and nothing once the campaign left the set.
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../platform/logger.ts';
import { loadMessageTypes } from '../../platform/message-types.ts';
import { compile, ev, identify } from '../../test/support/scenarios.ts';
import { createEngineCore } from '../core/engine-core.ts';
import { campaignMemberEvent, campaignRuleId, campaignRunId } from '../core/campaign.ts';
import type { UserState } from '../core/state.ts';
import {
  campaignProblems,
  campaignRuleDefinition,
  campaignRuleSet,
  COMPLETED_RULE_GRACE_MS,
  createCampaignRuleSet,
} from './compile.ts';
import type { Campaign } from './model.ts';

const NOW = Date.parse('2026-12-04T09:00:00Z');

const base = compile(
  [
    {
      id: 'welcome',
      category: 'transactional',
      trigger: { event: 'user_registered' },
      action: { send: { template: 'welcome', channels: ['email'] } },
    },
  ],
  [
    {
      id: 'pro',
      conditions: { all: [{ fact: 'user', path: '$.plan', operator: 'equal', value: 'pro' }] },
    },
  ],
);

function campaign(over: Partial<Campaign> = {}): Campaign {
  return {
    id: 'cmp_friday',
    name: 'Friday news',
    state: 'running',
    revision: 3,
    audience: { type: 'segment', segment: 'pro' },
    list: null,
    message: { template: 'weekly_digest', channels: ['email'] },
    schedule: { type: 'recurring', cron: '0 10 * * 5', timezone: 'user' },
    throttle: null,
    createdAt: '2026-12-01T10:00:00.000Z',
    createdBy: 'key_1',
    updatedAt: '2026-12-01T10:00:00.000Z',
    updatedBy: 'key_1',
    scheduledAt: '2026-12-01T10:00:00.000Z',
    startedAt: null,
    endedAt: null,
    ...over,
  };
}

describe('the rule of a campaign', () => {
  it('is triggered by its members, asks for its audience on user state, and sends its message', () => {
    expect(
      campaignRuleDefinition(
        campaign({
          message: {
            template: 'weekly_digest',
            channels: ['email', 'inapp'],
            holdout: 0.1,
            variants: [
              { id: 'a', weight: 1 },
              { id: 'b', weight: 1, template: 'welcome' },
            ],
            goal: { event: 'app_opened', within: '2d' },
            expiresAfter: '12h',
          },
        }),
      ),
    ).toEqual({
      id: 'campaign.cmp_friday',
      description: 'campaign "Friday news"',
      enabled: true,
      category: 'marketing',
      priority: 0,
      trigger: { event: 'campaign.member' },
      conditions: {
        all: [{ fact: 'segments', path: '$["pro"]', operator: 'equal', value: true }],
      },
      action: { send: { template: 'weekly_digest', channels: ['email', 'inapp'] } },
      experiment: {
        holdout: 0.1,
        variants: [
          { id: 'a', weight: 1 },
          { id: 'b', weight: 1, template: 'welcome' },
        ],
      },
      goal: { event: 'app_opened', within: '2d' },
      expiresAfter: '12h',
    });
    const filter = {
      all: [{ fact: 'stats', path: '$.export_done.count', operator: 'equal', value: 0 }],
    };
    expect(
      campaignRuleDefinition(campaign({ audience: { type: 'filter', conditions: filter } }))
        .conditions,
    ).toEqual(filter);
    // A list is its own audience: every member with state is asked.
    expect(campaignRuleDefinition(campaign({ audience: { type: 'list' } }))).not.toHaveProperty(
      'conditions',
    );
  });

  it("names the field of the campaign at fault, with the rules room's message", () => {
    expect(campaignProblems(campaign(), base)).toEqual([]);
    expect(
      campaignProblems(campaign({ audience: { type: 'segment', segment: 'prp' } }), base),
    ).toEqual([
      {
        field: 'audience.segment',
        message: expect.stringMatching(/unknown segment "prp" \(did you mean "pro"\?\)/),
      },
    ]);
    const bad = campaignProblems(
      campaign({
        audience: {
          type: 'filter',
          conditions: { all: [{ fact: 'user', path: '$.plan', operator: 'equals', value: 'pro' }] },
        },
      }),
      base,
    );
    expect(bad).toEqual([
      {
        field: 'audience.conditions.all[0].operator',
        message: expect.stringMatching(/unknown operator "equals" \(did you mean "equal"\?\)/),
      },
    ]);
    expect(
      campaignProblems(campaign({ message: { template: 'nope', channels: ['email'] } }), base, {
        templates: new Set(['weekly_digest', 'welcome']),
      }),
    ).toEqual([
      { field: 'message.template', message: expect.stringMatching(/unknown template "nope"/) },
    ]);
    expect(
      campaignProblems(
        campaign({ schedule: { type: 'recurring', cron: '0 10 * *', timezone: 'Mars/Base' } }),
        base,
      ).map((p) => p.field),
    ).toEqual(['schedule.cron', 'schedule.timezone']);
    expect(
      campaignProblems(campaign({ schedule: { type: 'at', at: '2026-12-04T10:00' } }), base),
    ).toEqual([{ field: 'schedule.at', message: expect.stringMatching(/with its offset/) }]);
  });

  it('checks its message type against the declared types, at the message field', () => {
    const messageTypes = loadMessageTypes('rules/message-types.json');
    const typed = (messageType: string, category?: 'marketing' | 'transactional') =>
      campaignProblems(
        campaign({
          message: {
            template: 'weekly_digest',
            channels: ['email'],
            messageType,
            ...(category ? { category } : {}),
          },
        }),
        base,
        { messageTypes },
      );
    expect(typed('digest')).toEqual([]);
    expect(typed('digets')).toEqual([
      {
        field: 'message.messageType',
        message: expect.stringMatching(/unknown message type "digets" \(did you mean "digest"\?\)/),
      },
    ]);
    expect(typed('billing')).toEqual([
      { field: 'message.category', message: expect.stringMatching(/"billing" is transactional/) },
    ]);
  });
});

describe('the engine set with campaigns', () => {
  it('holds the live campaigns and the recently completed ones, not drafts, stopped or cancelled ones', () => {
    const ended = (ms: number) => new Date(NOW - ms).toISOString();
    const { ruleSet, refused } = campaignRuleSet(
      base,
      [
        campaign({ id: 'running' }),
        campaign({ id: 'scheduled', state: 'scheduled' }),
        campaign({ id: 'draft', state: 'draft' }),
        campaign({ id: 'stopped', state: 'stopped', endedAt: ended(1000) }),
        campaign({ id: 'cancelled', state: 'cancelled', endedAt: ended(1000) }),
        campaign({ id: 'done', state: 'completed', endedAt: ended(1000) }),
        campaign({
          id: 'long-done',
          state: 'completed',
          endedAt: ended(COMPLETED_RULE_GRACE_MS + 1),
        }),
        campaign({ id: 'broken', audience: { type: 'segment', segment: 'gone' } }),
      ],
      NOW,
    );
    expect(ruleSet.rules.map((r) => r.def.id).sort()).toEqual([
      'campaign.done',
      'campaign.running',
      'campaign.scheduled',
      'welcome',
    ]);
    expect(refused.map((r) => r.campaignId)).toEqual(['broken']);
    expect(ruleSet.segments.map((s) => s.def.id)).toEqual(['pro']);
  });

  it('is rebuilt when the campaigns or the rule files change, and only then', () => {
    let campaigns = [campaign()];
    let version = 1;
    let files = base;
    const swaps: string[] = [];
    const live = createCampaignRuleSet({
      base: () => files,
      campaigns: { list: () => campaigns, version: () => version },
      logger: silentLogger(),
      clock: () => NOW,
      onSwap: (rs) => swaps.push(rs.version),
    });
    const first = live.current();
    expect(live.current()).toBe(first);
    campaigns = [campaign({ state: 'stopped', endedAt: new Date(NOW).toISOString() })];
    version++;
    expect(live.current().rules.map((r) => r.def.id)).toEqual(['welcome']);
    files = compile(
      [
        {
          id: 'other',
          category: 'marketing',
          trigger: { event: 'x' },
          action: { send: { template: 't', channels: ['email'] } },
        },
      ],
      [{ id: 'pro', conditions: { all: [] } }],
    );
    expect(live.current().rules.map((r) => r.def.id)).toEqual(['other']);
    expect(swaps).toHaveLength(3);
  });
});

describe('campaign members in the engine core', () => {
  const at = Date.parse('2026-12-04T09:00:00Z');
  const runId = campaignRunId(at, 'Europe/Berlin');

  function engineWith(campaigns: Campaign[]) {
    const { ruleSet } = campaignRuleSet(base, campaigns, NOW);
    return createEngineCore({ ruleSet: () => ruleSet });
  }
  function userState(core: ReturnType<typeof engineWith>, userId: string, plan: string): UserState {
    return core.apply(null, identify(userId, 0, { plan, email: `${userId}@example.com` }), 0)
      .state!;
  }

  it('sends to the members its audience matches, once per run, with the campaign id and run event', () => {
    const core = engineWith([campaign()]);
    const pro = userState(core, 'u-pro', 'pro');
    const free = userState(core, 'u-free', 'free');
    const member = campaignMemberEvent('cmp_friday', runId, 'u-pro', at);
    const r = core.apply(pro, member, at);
    expect(r.status).toBe('applied');
    expect(r.sends).toHaveLength(1);
    expect(r.sends[0]!.messageType).toBeUndefined();
    // A campaign that names a message type carries it on its sends, for delivery to honour.
    const typed = engineWith([
      campaign({
        message: { template: 'weekly_digest', channels: ['email'], messageType: 'digest' },
      }),
    ]);
    expect(
      typed.apply(userState(typed, 'u-pro', 'pro'), member, at).sends.map((s) => s.messageType),
    ).toEqual(['digest']);
    expect(r.sends[0]).toMatchObject({
      ruleId: campaignRuleId('cmp_friday'),
      userId: 'u-pro',
      campaignId: 'cmp_friday',
      category: 'marketing',
      template: 'weekly_digest',
      createdAt: at,
      triggeredBy: { eventId: member.id, eventType: 'campaign.member' },
      data: { event: { type: 'campaign.member', properties: { campaignId: 'cmp_friday', runId } } },
    });
    // The same member again (a page published twice after a crash) is a duplicate.
    expect(core.apply(r.state, member, at).status).toBe('duplicate');
    // Not in the segment: asked, not sent.
    expect(
      core.apply(free, campaignMemberEvent('cmp_friday', runId, 'u-free', at), at).sends,
    ).toEqual([]);
    // Members are not counted as user activity.
    expect(r.state!.stats['campaign.member']?.count ?? 0).toBe(0);
  });

  it('ignores members of a campaign that left the set, and of users it has no state for', () => {
    const core = engineWith([campaign({ state: 'stopped', endedAt: new Date(NOW).toISOString() })]);
    const pro = userState(core, 'u-pro', 'pro');
    const stopped = core.apply(pro, campaignMemberEvent('cmp_friday', runId, 'u-pro', at), at);
    expect(stopped.status).toBe('ignored');
    expect(stopped.sends).toEqual([]);
    const live = engineWith([campaign()]);
    expect(
      live.apply(null, campaignMemberEvent('cmp_friday', runId, 'nobody', at), at).status,
    ).toBe('no-user');
    const forged = live.apply(pro, ev('u-pro', 'campaign.member', 0, { properties: {} }), at);
    expect(forged.status).toBe('invalid');
  });

  it('puts holdout members in the holdout and splits the others over the variants, by user', () => {
    const core = engineWith([
      campaign({
        audience: { type: 'list' },
        message: {
          template: 'weekly_digest',
          channels: ['email'],
          holdout: 0.2,
          variants: [
            { id: 'a', weight: 1 },
            { id: 'b', weight: 1, template: 'welcome' },
          ],
        },
      }),
    ]);
    const seen = { holdout: 0, a: 0, b: 0 };
    for (let i = 0; i < 400; i++) {
      const u = `u${i}`;
      const [send] = core.apply(
        userState(core, u, 'free'),
        campaignMemberEvent('cmp_friday', runId, u, at),
        at,
      ).sends;
      if (send!.holdout) seen.holdout++;
      else if (send!.variant === 'a') seen.a++;
      else {
        expect(send!.template).toBe('welcome');
        seen.b++;
      }
    }
    expect(seen.holdout).toBeGreaterThan(50);
    expect(seen.holdout).toBeLessThan(110);
    expect(Math.abs(seen.a - seen.b)).toBeLessThan(70);
  });

  it('names a recurring run by its wall-clock time, so a user who moves zone gets one per occurrence', () => {
    const berlin = Date.parse('2026-12-04T09:00:00Z'); // Friday 10:00 in Berlin
    const newYork = Date.parse('2026-12-04T15:00:00Z'); // Friday 10:00 in New York
    expect(campaignRunId(berlin, 'Europe/Berlin')).toBe('2026-12-04T10:00');
    expect(campaignRunId(newYork, 'America/New_York')).toBe('2026-12-04T10:00');
    expect(campaignMemberEvent('c', campaignRunId(berlin, 'Europe/Berlin'), 'u', berlin).id).toBe(
      campaignMemberEvent('c', campaignRunId(newYork, 'America/New_York'), 'u', newYork).id,
    );
    expect(campaignRunId(berlin, null)).toBe('2026-12-04T09:00:00.000Z');
  });
});
