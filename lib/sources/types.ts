import type { StageConfig } from "../config/stage.js";
import type { RecordKind } from "../records/envelope.js";

/**
 * What every source mapper (native, Braze Currents, Braze Avro, Adobe, profiles,
 * groups) returns: per input item either a Mixpanel record ready for the queue or
 * a typed rejection that goes to the rejected store with its reason. Mappers are
 * pure: the clock and the hash come in through the context.
 */
export interface MapContext {
  /** Current time in ms since epoch (Mixpanel's clock is approximated by ours). */
  readonly nowMs: number;
  readonly config: StageConfig;
}

export interface MappedRecord {
  readonly ok: true;
  /** Position of the input item in the request, for the response's error list. */
  readonly index: number;
  readonly kind: RecordKind;
  /** The record serialized once, exactly as it will be sent to Mixpanel. */
  readonly line: string;
  /** An event's `properties.$insert_id` (as in `line`), for the hashed trace log of the enqueue step. */
  readonly insertId?: string;
  /** How many `token` / `$token` properties the sender put in the record and the mapper removed (lib/sources/caller-tokens.ts). */
  readonly callerTokensRemoved?: number;
}

export interface RejectedItem {
  readonly ok: false;
  readonly index: number;
  /** Machine-readable reason, e.g. `invalid_time`, `unsupported_event_type`, `no_external_user_id`. */
  readonly code: string;
  /** Human-readable reason, shown to the sender and stored with the item. */
  readonly reason: string;
  /** The input as received, so an operator can fix and replay it. */
  readonly payload: unknown;
  /**
   * Dropped items are expected skips (e.g. Braze events of users without an external id,
   * like Braze's own connector): counted and stored, but not reported as errors to the sender.
   */
  readonly dropped?: boolean;
}

export type MappedItem = MappedRecord | RejectedItem;
