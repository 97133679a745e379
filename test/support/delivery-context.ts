// Builds a SendContext for stage tests: a marketing email send with sensible defaults.
import type { Channel, SendCommand } from '../../platform/contracts.ts';
import type { SendContext } from '../../delivery/stage.ts';

export function sendCommand(over: Partial<SendCommand> = {}): SendCommand {
  return {
    sendId: 'send-1',
    ruleId: 'rule-1',
    userId: 'user-1',
    category: 'marketing',
    priority: 50,
    template: 'welcome',
    channels: ['email'],
    variant: null,
    holdout: false,
    triggeredBy: { eventId: 'evt-1', eventType: 'user_registered' },
    createdAt: Date.parse('2026-03-10T12:00:00Z'),
    expiresAt: null,
    data: { user: { email: 'ada@example.com', timezone: 'UTC', locale: 'en', firstName: 'Ada' } },
    ...over,
  };
}

export function testContext(
  over: {
    now?: number;
    category?: string;
    channel?: Channel;
    send?: Partial<SendCommand>;
    timezone?: string;
  } = {},
): SendContext {
  const send = sendCommand({ ...(over.category ? { category: over.category } : {}), ...over.send });
  return {
    send,
    channel: over.channel ?? 'email',
    recipient: {
      userId: send.userId,
      email: 'ada@example.com',
      locale: 'en',
      timezone: over.timezone ?? 'UTC',
    },
    now: over.now ?? Date.parse('2026-03-10T12:00:00Z'),
    resumeGen: null,
    gen: 0,
    attempts: 0,
    capHeld: false,
    fresh: true,
    takeover: false,
    unsettled: false,
    sideOutcomes: [],
    trace: [],
  };
}
