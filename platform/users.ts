// A user as the engine sees them, for the staff API (previews, the send API, user lookup):
// the port the engine implements (engine/runtime/user-view.ts) and the API process wires, so
// delivery's and the managers' routes read the engine's state without importing the engine.

export interface UserProfile {
  userId: string;
  /** Merged traits (identify, CDC rows), as rules and templates see them. */
  traits: Record<string, unknown>;
  /** Per event type: how often, first and last time (epoch ms). */
  stats: Record<string, { count: number; first: number | null; last: number | null }>;
  /** Ids of the segments the user is a member of. */
  segments: string[];
  /** Rule id -> how often it fired for the user, and when last. */
  rules: Record<string, { fires: number; lastFiredAt: number | null }>;
}

export interface UserDirectory {
  /** The user's profile, or null for a user the engine never saw (or erased). */
  profile(userId: string): Promise<UserProfile | null>;
}
