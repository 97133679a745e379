// The preview answers what the chain's suppression and consent stages decide, in their order,
// without changing anything.
import { describe, expect, it } from 'vitest';
import type { Channel } from '../../platform/contracts.ts';
import { sendCommand } from '../../test/support/delivery-context.ts';
import { createMemoryDeliveryStores } from '../pipeline/memory-stores.ts';
import { createPolicyPreview } from './preview.ts';

function world() {
  const { preferences } = createMemoryDeliveryStores();
  const preview = createPolicyPreview(preferences);
  const consent = (channel: Channel, granted: boolean) =>
    preferences.apply(
      'user-1',
      { records: [{ category: 'marketing', channel, record: { granted, at: 1, source: 't' } }] },
      { source: 't', at: 1 },
    );
  return { preferences, preview, consent };
}

describe('policy preview', () => {
  it('says a marketing send needs an opt-in, and passes once there is one', async () => {
    const w = world();
    const send = sendCommand();
    expect(await w.preview(send, 'email')).toBe('no_opt_in:marketing:email');
    await w.consent('email', true);
    expect(await w.preview(send, 'email')).toBeNull();
    await w.consent('email', false);
    expect(await w.preview(send, 'email')).toBe('opted_out:marketing:email');
    // Transactional mail skips consent...
    expect(await w.preview(sendCommand({ category: 'transactional' }), 'email')).toBeNull();
  });

  it('says suppression first, for every category, and a channel without an address', async () => {
    const w = world();
    await w.consent('email', true);
    await w.preferences.suppress('user-1', 'email', {
      reason: 'hard_bounce',
      at: 1,
      address: 'ada@example.com',
    });
    expect(await w.preview(sendCommand({ category: 'transactional' }), 'email')).toBe(
      'hard_bounce',
    );
    expect(await w.preview(sendCommand({ category: 'transactional' }), 'sms')).toBe(
      'no_address:sms',
    );
    await w.preferences.markDeleted('user-1', 2);
    expect(await w.preview(sendCommand(), 'email')).toBe('user_deleted');
    // Nothing was changed by asking.
    expect((await w.preferences.suppressions('user-1')).channels.email?.reason).toBe('hard_bounce');
  });
});
