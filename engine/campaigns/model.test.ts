// The campaign state machine, transition by transition: every action in every state is either
// allowed (with the state it leads to) or refused with a message naming what the state allows.
import { describe, expect, it } from 'vitest';
import {
  CAMPAIGN_STATES,
  campaignRefusal,
  isLive,
  transition,
  type Campaign,
  type CampaignAction,
  type CampaignState,
} from './model.ts';

const ACTIONS: CampaignAction[] = [
  'update',
  'upload',
  'schedule',
  'start',
  'complete',
  'stop',
  'cancel',
];

/** The whole table: state -> action -> next state, or null where it is refused. */
const EXPECTED: Record<CampaignState, Record<CampaignAction, CampaignState | null>> = {
  draft: {
    update: 'draft',
    upload: 'draft',
    schedule: 'scheduled',
    start: null,
    complete: null,
    stop: null,
    cancel: 'cancelled',
  },
  scheduled: {
    update: 'scheduled',
    upload: null,
    schedule: null,
    start: 'running',
    complete: 'completed',
    stop: null,
    cancel: 'cancelled',
  },
  running: {
    update: null,
    upload: null,
    schedule: null,
    start: null,
    complete: 'completed',
    stop: 'stopped',
    cancel: null,
  },
  completed: {
    update: null,
    upload: null,
    schedule: null,
    start: null,
    complete: null,
    stop: null,
    cancel: null,
  },
  stopped: {
    update: null,
    upload: null,
    schedule: null,
    start: null,
    complete: null,
    stop: null,
    cancel: null,
  },
  cancelled: {
    update: null,
    upload: null,
    schedule: null,
    start: null,
    complete: null,
    stop: null,
    cancel: null,
  },
};

describe('campaign state machine', () => {
  for (const state of CAMPAIGN_STATES)
    for (const action of ACTIONS) {
      const next = EXPECTED[state][action];
      it(`${state} + ${action} -> ${next ?? 'refused'}`, () => {
        const t = transition(state, action);
        if (next === null) {
          expect(t.ok).toBe(false);
          if (!t.ok) expect(t.message).toMatch(new RegExp(`^cannot .* a ${state} campaign: `));
        } else expect(t).toEqual({ ok: true, next });
      });
    }

  it('says what a refusing state allows instead, and that final states are final', () => {
    const running = transition('running', 'update');
    expect(running.ok || running.message).toBe(
      'cannot edit a running campaign: a running campaign can only be stopped (POST /v1/campaigns/:id/stop)',
    );
    const stopped = transition('stopped', 'schedule');
    expect(stopped.ok || stopped.message).toMatch(/is final: create a new one/);
    const scheduled = transition('scheduled', 'stop');
    expect(scheduled.ok || scheduled.message).toMatch(/can only be edited .*, cancelled/);
  });

  it('evaluates and fans out scheduled and running campaigns only', () => {
    expect(CAMPAIGN_STATES.filter(isLive)).toEqual(['scheduled', 'running']);
  });
});

describe('campaign records', () => {
  const campaign: Campaign = {
    id: 'cmp_1',
    name: 'Friday news',
    state: 'draft',
    revision: 1,
    audience: { type: 'segment', segment: 'active_7d' },
    list: null,
    message: { template: 'weekly_digest', channels: ['email'] },
    schedule: { type: 'recurring', cron: '0 10 * * 5', timezone: 'user' },
    throttle: null,
    createdAt: '2026-12-01T10:00:00.000Z',
    createdBy: 'key_1',
    updatedAt: '2026-12-01T10:00:00.000Z',
    updatedBy: 'key_1',
    scheduledAt: null,
    startedAt: null,
    endedAt: null,
  };

  it('accepts a whole campaign and says where another value is wrong', () => {
    expect(campaignRefusal(campaign)).toBeNull();
    expect(campaignRefusal({ ...campaign, state: 'paused' })).toMatch(/^\/state: /);
    expect(campaignRefusal({ ...campaign, id: 'Has Spaces' })).toMatch(/^\/id: /);
    const { revision: _r, ...noRevision } = campaign;
    expect(campaignRefusal(noRevision)).toMatch(/revision/);
  });
});
