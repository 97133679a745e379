// What flows through the policy chain: one send command on one channel, and the
// decision each stage takes about it.
import type { Channel, DeliveryOutcome, SendCommand } from '../platform/contracts.ts';
import type { OutgoingMessage, Recipient } from './provider.ts';

export interface SendContext {
  send: SendCommand;
  channel: Channel;
  recipient: Recipient;
  /** Wall-clock time of this pass through the chain (epoch ms). */
  now: number;
  /** Generation of the delay-queue entry this pass resumes (null: fresh from the topic). */
  resumeGen: number | null;
  /** Claim generation: parking the send creates generation gen + 1. */
  gen: number;
  /** Provider attempts made so far for this send and channel (from the claim). */
  attempts: number;
  /** Whether a cap slot is held for this send (released if it ends unsent). */
  capHeld: boolean;
  /** Set by the render stage, consumed by the provider stage. */
  message?: OutgoingMessage;
  /**
   * What the render stage rendered, for the message log: the template version used (null when
   * the template has no managed versions) and the locale it resolved to.
   */
  rendered?: { templateVersion: number | null; locale: string };
  /** Whether this pass created the claim (the send is new to delivery). */
  fresh: boolean;
  /**
   * Whether this pass took the send over from a worker that died during a provider call:
   * the provider may already have the message, so it is asked before sending again.
   */
  takeover: boolean;
  /**
   * Whether the last provider call of this send ended without an answer (a deadline, a
   * connection dropped after the data): the provider may have the message, so it is asked
   * before sending again.
   */
  unsettled: boolean;
  /**
   * The provider whose call ended without an answer, when known: the retry goes to it first
   * and moves on to another provider only once it answered.
   */
  unsettledProvider?: string;
  /** Outcomes about other sends decided on the way (a send that lost its cap slot to this one). */
  sideOutcomes: DeliveryOutcome[];
  /** Every stage's decision, in order, for logs and the final outcome's reason. */
  trace: { stage: string; result: string }[];
}

/** The decision of one stage. `continue` hands the send to the next stage. */
export type StageResult =
  | { kind: 'continue' }
  /** Nothing to do now (already handled, or waiting in the delay queue); `reemit` restores a lost outcome. */
  | {
      kind: 'skip';
      reason: string;
      reemit?: { status: FinalStatus; reason: string | null; provider: string | null };
    }
  | { kind: 'suppressed'; reason: string }
  | { kind: 'holdout' }
  /** Park the send in the durable delay queue until `until`. */
  /** `unsettled`: the provider may have accepted the message (see SendContext.unsettled). */
  | {
      kind: 'defer';
      until: number;
      reason: string;
      retry: boolean;
      error?: string;
      unsettled?: boolean;
      unsettledProvider?: string;
    }
  /** `dlq`: the send command itself is bad or exhausted its attempts and goes to the DLQ. */
  | { kind: 'failed'; reason: string; dlq: boolean; bounced?: boolean }
  /** `reconciled`: not sent now, the provider already had it from the worker that died. */
  | { kind: 'sent'; provider: string; providerMessageId?: string; reconciled?: boolean };

export type FinalStatus = 'sent' | 'suppressed' | 'holdout' | 'failed';

export interface Stage {
  readonly name: string;
  run(ctx: SendContext): Promise<StageResult>;
}

export const CONTINUE: StageResult = Object.freeze({ kind: 'continue' });
