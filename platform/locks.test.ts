// One process's named locks: holders of one name take turns in order, a failing holder does
// not keep the lock, and other names do not wait.
import { describe, expect, it } from 'vitest';
import { createMemoryLocks } from './locks.ts';

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('memory locks', () => {
  it('lets holders of one name take turns, in order, past a failing one; other names run meanwhile', async () => {
    const locks = createMemoryLocks();
    const log: string[] = [];
    const hold = (name: string, id: string, fail = false) =>
      locks.withLock(name, async () => {
        log.push(`${id}+`);
        await tick();
        log.push(`${id}-`);
        if (fail) throw new Error(`${id} failed`);
        return id;
      });
    const results = await Promise.allSettled([
      hold('a', 'a1'),
      hold('a', 'a2', true),
      hold('a', 'a3'),
      hold('b', 'b1'),
    ]);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : 'failed'))).toEqual([
      'a1',
      'failed',
      'a3',
      'b1',
    ]);
    const ofA = log.filter((e) => e.startsWith('a'));
    expect(ofA).toEqual(['a1+', 'a1-', 'a2+', 'a2-', 'a3+', 'a3-']);
    // b did not wait for a's line.
    expect(log.indexOf('b1+')).toBeLessThan(log.indexOf('a1-'));
  });
});
