// In-memory adapters for the engine core: a user state store and a timer queue ordered by
// due time. `lifecycle simulate`, the embedded demo and unit tests use them; the distributed
// engine uses Redis with the same contracts.
import type { UserState } from './state.ts';
import type { Timer } from './engine-core.ts';

export interface MemoryStateStore {
  get(userId: string): UserState | null;
  set(userId: string, state: UserState): void;
  delete(userId: string): void;
  /** User ids in first-seen order (deterministic, for schedule fan-out). */
  userIds(): IterableIterator<string>;
  readonly size: number;
}

export function createMemoryStateStore(): MemoryStateStore {
  const states = new Map<string, UserState>();
  return {
    get: (userId) => states.get(userId) ?? null,
    set: (userId, state) => void states.set(userId, state),
    delete: (userId) => void states.delete(userId),
    userIds: () => states.keys(),
    get size() {
      return states.size;
    },
  };
}

/**
 * Pending timers as a binary min-heap on (dueAt, id), so equal due times pop in a stable
 * order. Adding a timer whose id is already pending is a no-op (timer ids are deterministic).
 */
export interface TimerQueue {
  add(timer: Timer): boolean;
  /** The earliest pending timer, without removing it. */
  peek(): Timer | undefined;
  /** Removes and returns the earliest timer if it is due at or before `time`. */
  popDue(time: number): Timer | undefined;
  readonly size: number;
}

export function createTimerQueue(): TimerQueue {
  const heap: Timer[] = [];
  const pending = new Set<string>();
  const before = (a: Timer, b: Timer) => a.dueAt < b.dueAt || (a.dueAt === b.dueAt && a.id < b.id);

  function up(i: number): void {
    const item = heap[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(item, heap[parent]!)) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = item;
  }

  function down(i: number): void {
    const n = heap.length;
    const item = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && before(heap[r]!, heap[l]!) ? r : l;
      if (!before(heap[child]!, item)) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = item;
  }

  return {
    add(timer) {
      if (pending.has(timer.id)) return false;
      pending.add(timer.id);
      heap.push(timer);
      up(heap.length - 1);
      return true;
    },
    peek: () => heap[0],
    popDue(time) {
      const top = heap[0];
      if (top === undefined || top.dueAt > time) return undefined;
      const last = heap.pop()!;
      if (heap.length > 0) {
        heap[0] = last;
        down(0);
      }
      pending.delete(top.id);
      return top;
    },
    get size() {
      return heap.length;
    },
  };
}
