// A user as the rooms that hold them see them, for the staff API (previews, the send API, user
// lookup): the ports the engine (engine/runtime/user-view.ts) and delivery
// (delivery/user-view.ts) implement and the API process wires, so delivery's and the
// managers' routes read the engine's and delivery's state without importing those rooms.

export interface UserProfile {
  userId: string;
  /** Merged traits (identify, CDC rows), as rules and templates see them. */
  traits: Record<string, unknown>;
  /** Per event type: how often, first and last time (epoch ms). */
  stats: Record<string, { count: number; first: number | null; last: number | null }>;
  /** Ids of the segments the user is a member of. */
  segments: string[];
  /** Rule id -> how often it fired for the user, and when last; and how often its digest was too short to send (`skipped`), and when last. */
  rules: Record<
    string,
    { fires: number; lastFiredAt: number | null; skipped?: number; lastSkippedAt?: number }
  >;
}

export interface UserDirectory {
  /** The user's profile, or null for a user the engine never saw (or erased). */
  profile(userId: string): Promise<UserProfile | null>;
}

/** A delayed trigger of the engine waiting for its time. */
export interface PendingTimer {
  id: string;
  /** The rule whose delayed trigger set it; `@segments` for the recheck of time-based segments. */
  ruleId: string;
  /** What firing does: evaluate the rule against the user's state then (it may send), or re-evaluate segments. */
  fires: 'rule' | 'segments';
  /** When it fires (epoch ms). */
  dueAt: number;
  /** The event that set it: what the rule's conditions see as `event` when it fires. */
  trigger: { id: string; type: string; ts: number } | null;
}

/** A user a search text found. */
export interface UserMatch {
  userId: string;
  /** What matched: the text is the userId, or the user's email address or phone number. */
  matched: ('userId' | 'email' | 'phone')[];
  traits: Record<string, unknown>;
}

/** What support staff look a user up in the engine by (engine/runtime/user-view.ts). */
export interface UserLookup extends UserDirectory {
  /** The user's pending timers, soonest first; null for a user the engine has no state for. */
  pendingTimers(userId: string): Promise<PendingTimer[] | null>;
  /**
   * Users the text names: by exact userId, by email address (case-insensitive) or by phone
   * number (punctuation ignored), as the engine stores them now; erased users are never found.
   */
  find(text: string, limit: number): Promise<UserMatch[]>;
}

/** A consent given or withdrawn, per category and channel (latest record). */
export interface ConsentView {
  granted: boolean;
  /** When the user gave or withdrew it (epoch ms). */
  at: number;
  /** Where: `signup_form`, `preference_page`, `one_click_unsubscribe`, `admin_api`, ... */
  source: string;
}

/** One change of a user's preferences, as delivery's history keeps it (newest first). */
export interface PreferenceChangeView {
  kind: 'consent' | 'message_type' | 'unsubscribe_all' | 'resubscribe_all';
  category?: string;
  /** The message type switched (kind `message_type`). */
  messageType?: string;
  channel?: string;
  granted?: boolean;
  /** When the consent was given or withdrawn (a backend may date it back). */
  at: number;
  /** Where the user gave it. */
  source: string;
  /** The door the change came through: `admin_api`, `preference_page`, `one_click_unsubscribe`, `unsubscribe_page`. */
  via?: string;
  /** When the product recorded it (epoch ms). */
  recordedAt?: number;
  /** The staff credential that made it, for changes through the staff API. */
  by?: { actor: string; role: string | null };
}

export interface PreferencesView {
  unsubscribedAll: { at: number; source: string } | null;
  /** category -> channel -> the latest consent record. */
  consents: Record<string, Partial<Record<string, ConsentView>>>;
  /** message type -> channel -> the user's latest switch. */
  types: Record<string, Partial<Record<string, ConsentView>>>;
  history: PreferenceChangeView[];
}

export interface SuppressionView {
  reason: string;
  at: number;
  /** The address or token that failed (a new address of the same user is not suppressed). */
  address?: string;
}

export interface SuppressionsView {
  /** Set once the user was erased: every channel is suppressed. */
  deleted: SuppressionView | null;
  channels: Partial<Record<string, SuppressionView>>;
}

export interface InboxView {
  unread: number;
  /** Newest first. */
  messages: {
    id: string;
    ruleId: string;
    category: string;
    title: string;
    body: string;
    url?: string;
    createdAt: number;
    readAt: number | null;
  }[];
}

/** What delivery holds about a user (delivery/user-view.ts): preferences, suppressions, in-app inbox. */
export interface UserMessaging {
  preferences(userId: string, historyLimit: number): Promise<PreferencesView>;
  suppressions(userId: string): Promise<SuppressionsView>;
  inbox(userId: string, limit: number): Promise<InboxView>;
}
