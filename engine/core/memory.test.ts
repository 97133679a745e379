import { describe, expect, it } from 'vitest';
import { createTimerQueue } from './memory.ts';
import type { Timer } from './engine-core.ts';

const t = (id: string, dueAt: number): Timer => ({
  id,
  userId: 'u',
  ruleId: 'r',
  dueAt,
  trigger: {
    id: 'e',
    userId: 'u',
    type: 'x',
    ts: 0,
    receivedAt: 0,
    source: 'test',
    properties: {},
  },
});

describe('timer queue', () => {
  it('pops due timers in (dueAt, id) order and ignores a timer already pending', () => {
    const q = createTimerQueue();
    let seed = 1;
    const due: number[] = [];
    for (let i = 0; i < 500; i++) {
      seed = (seed * 48271) % 2147483647;
      due.push(seed % 1000);
      expect(q.add(t(`t${i}`, seed % 1000))).toBe(true);
    }
    expect(q.add(t('t0', 5))).toBe(false);
    expect(q.size).toBe(500);
    expect(q.popDue(-1)).toBeUndefined();
    const out: Timer[] = [];
    for (let x = q.popDue(499); x; x = q.popDue(499)) out.push(x);
    expect(out.length).toBe(due.filter((d) => d <= 499).length);
    for (let i = 1; i < out.length; i++) {
      const a = out[i - 1]!;
      const b = out[i]!;
      expect(a.dueAt < b.dueAt || (a.dueAt === b.dueAt && a.id < b.id)).toBe(true);
    }
    expect(q.peek()!.dueAt).toBeGreaterThan(499);
    // Once fired, the same id may be set again.
    expect(q.add(out[0]!)).toBe(true);
  });
});
