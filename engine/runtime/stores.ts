// What the engine runtime needs from its state, timer and contact-index storage, and the
// in-memory implementations (demo, tests). Redis implementations: ./redis-state.ts,
// ./timers.ts, ./contacts.ts. All enforce the same single-writer rule: a partition's owner
// holds an epoch taken on assignment, and every write made under an older epoch is refused.
import type { Timer } from '../core/engine-core.ts';

export type { Timer };

/** One user's stored record as the runtime sees it (the state itself stays serialised). */
export interface StoredUser {
  /** Serialised core state; null when the user has none or was erased. */
  state: string | null;
  /** Partition and offset of the last event applied to this user (the replay fence). */
  partition: number | null;
  offset: string | null;
  /** The contact terms the user is filed under in the contact index (null: never filed). */
  contacts?: string | null;
}

export interface UserWrite {
  userId: string;
  /** Serialised state, or null to erase the user (right to be forgotten). */
  state: string | null;
  offset: string;
  /** Timers scheduled for this user in this batch (indexed so an erase can find them). */
  timerIds: string[];
  /** The contact terms the user is now filed under (./contacts.ts); absent: left as stored. */
  contacts?: string;
}

export interface WriteResult {
  /** Users whose write was refused because a newer owner of the partition wrote them. */
  refused: string[];
  /** Timer ids of erased users, to be removed from the partition's timer set. */
  erasedTimers: { userId: string; timerId: string }[];
}

export interface StateStore {
  /** Takes ownership of a partition: returns a new epoch, greater than every earlier one. */
  acquire(partition: number): Promise<number>;
  /** The epoch currently in force for a partition (null: never acquired). */
  currentEpoch(partition: number): Promise<number | null>;
  /** Loads several users in one round trip. Users without a record are absent from the map. */
  load(userIds: string[]): Promise<Map<string, StoredUser>>;
  /** Writes users fenced by (partition, epoch): a write is refused when the user was written under a newer epoch of that partition. */
  write(partition: number, epoch: number, writes: UserWrite[]): Promise<WriteResult>;
}

export interface TimerStore {
  /** Schedules timers (idempotent by id). False, and nothing written, when `epoch` is no longer the partition's. */
  schedule(partition: number, epoch: number, timers: Timer[]): Promise<boolean>;
  /** Timers due at `now`, oldest first. */
  due(partition: number, now: number, limit: number): Promise<Timer[]>;
  /** Removes fired or erased timers. False when `epoch` is no longer the partition's. */
  remove(
    partition: number,
    epoch: number,
    timers: { userId: string; timerId: string }[],
  ): Promise<boolean>;
  pending(partition: number): Promise<number>;
  /** A user's pending timers on a partition, soonest first (for the staff lookup). */
  userTimers(partition: number, userId: string): Promise<Timer[]>;
}

/** One user's change in the contact index: terms to file the user under, terms to take them off. */
export interface ContactChange {
  userId: string;
  add: string[];
  remove: string[];
}

/** Users by contact term (./contacts.ts), per partition, written only by the partition's owner. */
export interface ContactIndex {
  /** Applies a batch's changes on a partition. False, and nothing written, when `epoch` is no longer the partition's. */
  update(partition: number, epoch: number, changes: ContactChange[]): Promise<boolean>;
  /** Users filed under a term, on any partition (at most `limit`). */
  find(term: string, limit: number): Promise<string[]>;
}

/** Records of erased users keep only the replay fence, and only this long. */
export const TOMBSTONE_TTL_MS = 24 * 3600 * 1000;

interface MemoryRecord {
  state: string | null;
  partition: number;
  epoch: number;
  offset: string;
  timerIds: Set<string>;
  expiresAt: number | null;
  contacts: string | null;
}

/** State, timers and the contact index in process memory, with the same fencing as the Redis stores. */
export class MemoryStores implements StateStore, TimerStore, ContactIndex {
  private readonly epochs = new Map<number, number>();
  private readonly users = new Map<string, MemoryRecord>();
  private readonly timers = new Map<number, Map<string, Timer>>();
  /** Partition -> term -> userIds. */
  private readonly contactIndex = new Map<number, Map<string, Set<string>>>();

  constructor(private readonly clock: () => number = Date.now) {}

  async acquire(partition: number): Promise<number> {
    const next = (this.epochs.get(partition) ?? 0) + 1;
    this.epochs.set(partition, next);
    return next;
  }

  async currentEpoch(partition: number): Promise<number | null> {
    return this.epochs.get(partition) ?? null;
  }

  async load(userIds: string[]): Promise<Map<string, StoredUser>> {
    const out = new Map<string, StoredUser>();
    const now = this.clock();
    for (const id of userIds) {
      const r = this.users.get(id);
      if (!r) continue;
      if (r.expiresAt !== null && r.expiresAt <= now) {
        this.users.delete(id);
        continue;
      }
      out.set(id, {
        state: r.state,
        partition: r.partition,
        offset: r.offset,
        contacts: r.contacts,
      });
    }
    return out;
  }

  async write(partition: number, epoch: number, writes: UserWrite[]): Promise<WriteResult> {
    const result: WriteResult = { refused: [], erasedTimers: [] };
    for (const w of writes) {
      const prev = this.users.get(w.userId);
      if (prev && prev.partition === partition && prev.epoch > epoch) {
        result.refused.push(w.userId);
        continue;
      }
      if (w.state === null) {
        for (const timerId of new Set([...(prev?.timerIds ?? []), ...w.timerIds]))
          result.erasedTimers.push({ userId: w.userId, timerId });
        this.users.set(w.userId, {
          state: null,
          partition,
          epoch,
          offset: w.offset,
          timerIds: new Set(),
          expiresAt: this.clock() + TOMBSTONE_TTL_MS,
          contacts: null,
        });
      } else {
        const timerIds = new Set(prev?.state === null ? [] : (prev?.timerIds ?? []));
        for (const t of w.timerIds) timerIds.add(t);
        this.users.set(w.userId, {
          state: w.state,
          partition,
          epoch,
          offset: w.offset,
          timerIds,
          expiresAt: null,
          contacts: w.contacts ?? (prev?.state === null ? null : (prev?.contacts ?? null)),
        });
      }
    }
    return result;
  }

  async schedule(partition: number, epoch: number, timers: Timer[]): Promise<boolean> {
    if (this.epochs.get(partition) !== epoch) return false;
    const set = this.partitionTimers(partition);
    for (const t of timers) set.set(t.id, structuredClone(t));
    return true;
  }

  async due(partition: number, now: number, limit: number): Promise<Timer[]> {
    return [...this.partitionTimers(partition).values()]
      .filter((t) => t.dueAt <= now)
      .sort((a, b) => a.dueAt - b.dueAt || (a.id < b.id ? -1 : 1))
      .slice(0, limit)
      .map((t) => structuredClone(t));
  }

  async remove(
    partition: number,
    epoch: number,
    timers: { userId: string; timerId: string }[],
  ): Promise<boolean> {
    if (this.epochs.get(partition) !== epoch) return false;
    const set = this.partitionTimers(partition);
    for (const t of timers) {
      set.delete(t.timerId);
      this.users.get(t.userId)?.timerIds.delete(t.timerId);
    }
    return true;
  }

  async pending(partition: number): Promise<number> {
    return this.partitionTimers(partition).size;
  }

  async userTimers(partition: number, userId: string): Promise<Timer[]> {
    const ids = this.users.get(userId)?.timerIds ?? new Set<string>();
    const set = this.partitionTimers(partition);
    return [...ids]
      .flatMap((id) => {
        const t = set.get(id);
        return t ? [structuredClone(t)] : [];
      })
      .sort((a, b) => a.dueAt - b.dueAt || (a.id < b.id ? -1 : 1));
  }

  async update(partition: number, epoch: number, changes: ContactChange[]): Promise<boolean> {
    if (this.epochs.get(partition) !== epoch) return false;
    let index = this.contactIndex.get(partition);
    if (!index) this.contactIndex.set(partition, (index = new Map()));
    for (const c of changes) {
      for (const t of c.remove) {
        const ids = index.get(t);
        ids?.delete(c.userId);
        if (ids?.size === 0) index.delete(t);
      }
      for (const t of c.add) {
        let ids = index.get(t);
        if (!ids) index.set(t, (ids = new Set()));
        ids.add(c.userId);
      }
    }
    return true;
  }

  async find(term: string, limit: number): Promise<string[]> {
    const out = new Set<string>();
    for (const index of this.contactIndex.values())
      for (const id of index.get(term) ?? []) out.add(id);
    return [...out].sort().slice(0, limit);
  }

  private partitionTimers(partition: number): Map<string, Timer> {
    let m = this.timers.get(partition);
    if (!m) {
      m = new Map();
      this.timers.set(partition, m);
    }
    return m;
  }
}
