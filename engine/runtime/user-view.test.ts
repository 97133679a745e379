import { describe, expect, it } from 'vitest';
import { emptyState, serializeState } from '../core/state.ts';
import { MemoryStores } from './stores.ts';
import { createUserDirectory } from './user-view.ts';

describe('user directory', () => {
  it("reads a user's traits, stats, segments and rule history from the engine's state store", async () => {
    const stores = new MemoryStores(() => 1_000);
    const epoch = await stores.acquire(0);
    const state = emptyState();
    state.traits = { email: 'ada@example.com', locale: 'de' };
    state.stats['Feature Used'] = { count: 3, first: 10, last: 30 };
    state.stats['never'] = { count: 0, first: null, last: null };
    state.segments = { trial: true, churned: false };
    state.rules = {
      welcome: { fires: 1, lastFiredAt: 20 },
      digest: { fires: 0, lastFiredAt: null, skipped: 2, lastSkippedAt: 25 },
    };
    await stores.write(0, epoch, [
      { userId: 'u1', state: serializeState(state), offset: '5', timerIds: [] },
    ]);

    const directory = createUserDirectory(stores);
    expect(await directory.profile('u1')).toEqual({
      userId: 'u1',
      traits: { email: 'ada@example.com', locale: 'de' },
      stats: { 'Feature Used': { count: 3, first: 10, last: 30 } },
      segments: ['trial'],
      rules: {
        welcome: { fires: 1, lastFiredAt: 20 },
        digest: { fires: 0, lastFiredAt: null, skipped: 2, lastSkippedAt: 25 },
      },
    });
    expect(await directory.profile('nobody')).toBeNull();

    await stores.write(0, epoch, [{ userId: 'u1', state: null, offset: '6', timerIds: [] }]);
    expect(await directory.profile('u1')).toBeNull();
  });
});
