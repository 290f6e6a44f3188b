import { describeError } from "../util/errors.js";
import { insertIdHash } from "../observability/trace-ids.js";
import { type RecordKind, serializeEnvelope } from "../records/envelope.js";
import { type QueuedRecords, packEnvelopesV2, parseQueuedRecords } from "../records/envelope-v2.js";
import type { RejectedItemRecord, RejectedStore } from "./rejected-store.js";

/**
 * The engine every queue forwarder runs, whatever the destination: decode → send → settle →
 * store → requeue, one small stage each. A destination (a variant: lib/forwarder/mixpanel.ts,
 * lib/forwarder/brevo.ts) supplies only its send step, which answers one outcome per record.
 *
 * A message whose records only partly went through is not redelivered whole: resending what the
 * destination already took could apply a profile `$add` or `$append` twice (Mixpanel's /engage
 * has no dedup, docs/vendors/mixpanel-api.md §6). Its unsent records are re-queued as a new
 * envelope and the original is acknowledged. A message with nothing sent is handed back to SQS
 * (SQS partial batch response), whose redrive policy moves it to the DLQ in time.
 *
 * How long a re-queued record waits, and whether the wait counts toward the DLQ, depends on why
 * it was not sent (see `requeuePlan`):
 * - transient trouble or a configuration error: delayed 30 s × 2^attempt, `attempt` + 1, and
 *   after `maxRequeues` to the DLQ;
 * - a rate-limit window with a known reopen time: delayed until it reopens (SQS DelaySeconds
 *   tops out at 900 s, so a longer window is waited out in several hops), `attempt` unchanged:
 *   a vendor's hourly bucket is not the record's fault and must not carry it to the DLQ;
 * - never tried (the invocation ran out of time first): re-queued at once, `attempt` unchanged.
 */
export interface QueueMessage {
  readonly messageId: string;
  readonly body: string;
}

/** Why a record is owed another try, beyond its reason. */
export type RetryCause =
  /** Transient trouble: backs off and counts toward the DLQ. */
  | { readonly kind: "transient" }
  /** A rate-limit window that reopens at `reopensAt` (epoch ms): waits for it, free. */
  | { readonly kind: "window"; readonly reopensAt: number }
  /** Not attempted at all (no time left): comes back at once, free. */
  | { readonly kind: "untried" };

/** A record's fate at its destination. */
export type RecordOutcome =
  | { readonly status: "sent" }
  /** Not for this destination by design (e.g. a Brevo event without a mapping): settled, counted by code. */
  | { readonly status: "skipped"; readonly code: string }
  /** Refused for good: stored with its reason for an operator, never resent. */
  | { readonly status: "rejected"; readonly reason: string }
  /** Owed another try; absent `cause` = transient. */
  | { readonly status: "retry"; readonly reason: string; readonly cause?: RetryCause }
  /** Credentials or settings are wrong: kept for redelivery and the DLQ, never dropped. */
  | { readonly status: "config"; readonly reason: string };

export interface ConsumeSummary {
  readonly failedMessageIds: string[];
  readonly sent: number;
  readonly rejected: number;
  /** Records left for another try (transient trouble, a rate-limit window, no time left). */
  readonly retried: number;
  /** Records blocked by credentials/settings. */
  readonly blockedByConfig: number;
  readonly invalidMessages: number;
  readonly configErrors: string[];
  /** Messages whose unsent records were re-queued instead of redelivered whole. */
  readonly requeued: number;
  /** Messages whose unsent records went to the DLQ after `maxRequeues`. */
  readonly deadLettered: number;
  /** Intake correlation ids of the envelopes in this batch, for tracing a record end to end. */
  readonly correlationIds: string[];
  /**
   * Hashed trace ids (lib/observability/trace-ids.ts) of the records refused or waiting for a
   * retry, when the variant names a record's trace id (Mixpanel: an event's `$insert_id`), for
   * `npm run trace`. Sent records are not listed: the edge that queued them logged their hashes.
   */
  readonly traceHashes: { readonly rejected: string[]; readonly pending: string[] };
  /** Records the destination does not take by design, by code. */
  readonly skipped: Record<string, number>;
}

/** Where re-queued records go (an SQS queue and its DLQ). */
export interface RequeueTarget {
  send(body: string, delaySeconds: number): Promise<void>;
  deadLetter(body: string): Promise<void>;
  readonly maxRequeues: number;
}

/** A v2 event message sent as built at the edge (gzipped lines), one request each. */
export interface PreparedBatch {
  readonly gzipped: Buffer<ArrayBuffer>;
  readonly count: number;
  readonly rawBytes: number;
  lines(): readonly string[];
}

export interface EnvelopeConsumerDeps {
  /** The variant's send step: one outcome per line, in order. */
  send(kind: RecordKind, lines: readonly string[]): Promise<RecordOutcome[]>;
  /**
   * Event messages of at least `minRecords` records that arrive gzipped are sent as built, one
   * request each, with one outcome list per batch. Absent = every message goes through `send`.
   */
  readonly prepared?: {
    readonly minRecords: number;
    send(batches: readonly PreparedBatch[]): Promise<RecordOutcome[][]>;
  };
  /** A record's trace id, hashed into the summary when it is refused or waits (absent = none). */
  readonly traceIdOf?: (kind: RecordKind, line: string) => string | undefined;
  readonly rejected: RejectedStore;
  /** Where partly sent messages' remaining records go; absent = redeliver the whole message. */
  readonly requeue?: RequeueTarget;
  /** The SQS message cap, for re-queued envelopes (default 256 KiB). */
  readonly maxMessageBytes?: number;
  /** Code stored with each refused record, e.g. `mixpanel_rejected`, `brevo_rejected`. */
  readonly rejectedCode: string;
  readonly stageOfFailure: "forwarder" | "brevo";
  /** Stored with refused records so `npm run replay` sends them back to the right queue (absent = Mixpanel). */
  readonly destination?: "brevo";
  /** Epoch ms, for the wait until a rate-limit window reopens (default Date.now). */
  readonly now?: () => number;
}

/** SQS DelaySeconds tops out at 15 minutes (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html). */
export const MAX_DELAY_SECONDS = 900;
const DEFAULT_MAX_MESSAGE_BYTES = 262_144;

export function requeueDelaySeconds(attempt: number): number {
  return Math.min(MAX_DELAY_SECONDS, 30 * 2 ** attempt);
}

/** Seconds until a window reopens, as one SQS delay (a longer wait is chained: the record comes back and waits again). */
export function windowDelaySeconds(reopensAt: number, now: number): number {
  return Math.min(MAX_DELAY_SECONDS, Math.max(0, Math.ceil((reopensAt - now) / 1000)));
}

// ---------------------------------------------------------------------------------------------
// decode

interface RecordRef {
  readonly message: number;
  readonly envelope: QueuedRecords;
  /** Position inside the envelope's records. */
  readonly position: number;
}

interface Decoded {
  readonly byKind: Map<RecordKind, { lines: string[]; refs: RecordRef[] }>;
  readonly prepared: { message: number; envelope: QueuedRecords; batch: PreparedBatch }[];
  readonly invalid: { message: number; reason: string }[];
  readonly correlationIds: Set<string>;
}

/** Each message's envelope, its lines grouped by kind (one send per kind), or why it is unreadable. */
function decode(messages: readonly QueueMessage[], deps: EnvelopeConsumerDeps): Decoded {
  const decoded: Decoded = { byKind: new Map(), prepared: [], invalid: [], correlationIds: new Set() };
  messages.forEach((message, index) => {
    let envelope: QueuedRecords;
    try {
      envelope = parseQueuedRecords(message.body);
    } catch (error) {
      decoded.invalid.push({ message: index, reason: describeError(error).slice(0, 500) });
      return;
    }
    decoded.correlationIds.add(envelope.correlationId);
    if (deps.prepared && envelope.kind === "event" && envelope.gzipped && envelope.count >= deps.prepared.minRecords) {
      const { body, rawBytes } = envelope.gzipped;
      decoded.prepared.push({ message: index, envelope, batch: { gzipped: body, rawBytes, count: envelope.count, lines: () => envelope.lines() } });
      return;
    }
    const group = decoded.byKind.get(envelope.kind) ?? { lines: [], refs: [] };
    envelope.lines().forEach((line, position) => {
      group.lines.push(line);
      group.refs.push({ message: index, envelope, position });
    });
    decoded.byKind.set(envelope.kind, group);
  });
  return decoded;
}

// ---------------------------------------------------------------------------------------------
// settle: one record's outcome into the batch's ledger

export interface UnsentRecord {
  readonly position: number;
  readonly line: string;
  readonly cause: RetryCause;
}

const TRANSIENT: RetryCause = { kind: "transient" };

class Ledger {
  readonly failed = new Set<number>();
  /** Messages with at least one record the destination took, skipped or refused for good. */
  readonly settledSome = new Set<number>();
  /** Records still owed a send, per message. */
  readonly unsent = new Map<number, { envelope: QueuedRecords; records: UnsentRecord[] }>();
  /** Refusals grouped by their origin so the store keeps source and correlation id. */
  readonly rejectedByOrigin = new Map<string, { envelope: QueuedRecords; messages: Set<number>; items: RejectedItemRecord[] }>();
  readonly configErrors = new Set<string>();
  readonly skipped: Record<string, number> = {};
  readonly traceHashes = { rejected: [] as string[], pending: [] as string[] };
  sent = 0;
  retried = 0;
  blockedByConfig = 0;

  constructor(private readonly deps: EnvelopeConsumerDeps) {}

  settle(kind: RecordKind, ref: RecordRef, outcome: RecordOutcome, lineOf: () => string): void {
    if (this.deps.traceIdOf && outcome.status !== "sent" && outcome.status !== "skipped") {
      const traceId = this.deps.traceIdOf(kind, lineOf());
      if (traceId !== undefined) this.traceHashes[outcome.status === "rejected" ? "rejected" : "pending"].push(insertIdHash(traceId));
    }
    switch (outcome.status) {
      case "sent":
        this.sent++;
        this.settledSome.add(ref.message);
        return;
      case "skipped":
        this.skipped[outcome.code] = (this.skipped[outcome.code] ?? 0) + 1;
        this.settledSome.add(ref.message);
        return;
      case "rejected": {
        this.settledSome.add(ref.message);
        const key = `${ref.envelope.source}\u0000${ref.envelope.correlationId}\u0000${kind}`;
        const bucket = this.rejectedByOrigin.get(key) ?? { envelope: ref.envelope, messages: new Set<number>(), items: [] };
        bucket.messages.add(ref.message);
        bucket.items.push({ index: ref.position, code: this.deps.rejectedCode, reason: outcome.reason, line: lineOf() });
        this.rejectedByOrigin.set(key, bucket);
        return;
      }
      case "retry":
        this.retried++;
        this.keepUnsent(ref, lineOf(), outcome.cause ?? TRANSIENT);
        return;
      case "config":
        this.blockedByConfig++;
        this.configErrors.add(outcome.reason);
        this.keepUnsent(ref, lineOf(), TRANSIENT);
        return;
    }
  }

  private keepUnsent(ref: RecordRef, line: string, cause: RetryCause): void {
    this.failed.add(ref.message);
    const entry = this.unsent.get(ref.message) ?? { envelope: ref.envelope, records: [] };
    entry.records.push({ position: ref.position, line, cause });
    this.unsent.set(ref.message, entry);
  }
}

// ---------------------------------------------------------------------------------------------
// send

async function sendAll(decoded: Decoded, deps: EnvelopeConsumerDeps, ledger: Ledger): Promise<void> {
  for (const [kind, group] of decoded.byKind) {
    const outcomes = await deps.send(kind, group.lines);
    outcomes.forEach((outcome, i) => {
      const ref = group.refs[i];
      if (ref) ledger.settle(kind, ref, outcome, () => group.lines[i] ?? "");
    });
  }
  if (deps.prepared && decoded.prepared.length > 0) {
    const outcomesByMessage = await deps.prepared.send(decoded.prepared.map(({ batch }) => batch));
    decoded.prepared.forEach(({ message, envelope }, p) => {
      (outcomesByMessage[p] ?? []).forEach((outcome, position) => {
        ledger.settle("event", { message, envelope, position }, outcome, () => envelope.lines()[position] ?? "");
      });
    });
  }
}

// ---------------------------------------------------------------------------------------------
// store: refusals and unreadable messages into the rejected store

/** Returns the messages that must come back whole because their refusals could not be stored, and the records stored. */
async function storeRefusals(
  messages: readonly QueueMessage[],
  decoded: Decoded,
  deps: EnvelopeConsumerDeps,
  ledger: Ledger,
): Promise<{ stored: number; mustRedeliver: Set<number> }> {
  const mustRedeliver = new Set<number>();
  let stored = 0;
  const origin = deps.destination ? { destination: deps.destination } : {};
  await Promise.all([
    ...[...ledger.rejectedByOrigin.values()].map(async ({ envelope, messages: fromMessages, items }) => {
      try {
        await deps.rejected.put({ source: envelope.source, correlationId: envelope.correlationId, kind: envelope.kind, stageOfFailure: deps.stageOfFailure, ...origin, items });
        stored += items.length;
      } catch {
        // Nothing lost: the messages come back and the destination refuses the records again.
        for (const message of fromMessages) {
          ledger.failed.add(message);
          mustRedeliver.add(message);
        }
      }
    }),
    ...decoded.invalid.map(async ({ message, reason }) => {
      try {
        await deps.rejected.put({
          source: "unknown",
          correlationId: messages[message]?.messageId ?? "unknown",
          stageOfFailure: deps.stageOfFailure,
          ...origin,
          items: [{ index: 0, code: "invalid_envelope", reason, payload: messages[message]?.body }],
        });
      } catch {
        ledger.failed.add(message);
      }
    }),
  ]);
  return { stored, mustRedeliver };
}

// ---------------------------------------------------------------------------------------------
// requeue

/** One new envelope's worth of a message's unsent records, with its delay and whether it spends a re-queue. */
export interface RequeueGroup {
  readonly records: string[];
  readonly attempt: number;
  readonly delaySeconds: number;
  /** Past `maxRequeues`: to the DLQ instead. */
  readonly deadLetter: boolean;
}

/**
 * A message's unsent records split by cause, each keeping its envelope order: transient ones back
 * off and spend a re-queue; ones waiting for a window wait for the earliest reopen time among
 * them (a later one waits again when it comes back, free); never-tried ones return at once.
 */
export function requeuePlan(records: readonly UnsentRecord[], previousAttempt: number, maxRequeues: number, now: number): RequeueGroup[] {
  const inOrder = [...records].sort((a, b) => a.position - b.position);
  const transient = inOrder.filter((r) => r.cause.kind === "transient");
  const waiting = inOrder.filter((r) => r.cause.kind === "window");
  const untried = inOrder.filter((r) => r.cause.kind === "untried");
  const groups: RequeueGroup[] = [];
  if (transient.length > 0) {
    const attempt = previousAttempt + 1;
    groups.push({ records: transient.map((r) => r.line), attempt, delaySeconds: requeueDelaySeconds(attempt - 1), deadLetter: attempt > maxRequeues });
  }
  if (waiting.length > 0) {
    const reopensAt = Math.min(...waiting.map((r) => (r.cause.kind === "window" ? r.cause.reopensAt : now)));
    groups.push({ records: waiting.map((r) => r.line), attempt: previousAttempt, delaySeconds: windowDelaySeconds(reopensAt, now), deadLetter: false });
  }
  if (untried.length > 0) groups.push({ records: untried.map((r) => r.line), attempt: previousAttempt, delaySeconds: 0, deadLetter: false });
  return groups;
}

/**
 * Unsent records go back as v2 (fewer bytes; the forwarders read both). A record that compresses
 * above the message cap (an incompressible v1 record near 256 KiB, whose base64 is a third
 * bigger) or cannot be a v2 line keeps the v1 form it fitted in before.
 */
function requeueBodies(envelope: QueuedRecords, records: string[], attempt: number, maxMessageBytes: number): string[] {
  try {
    const packed = packEnvelopesV2(envelope.kind, envelope.source, envelope.correlationId, records, { maxMessageBytes, attempt });
    if (packed.oversizedIndexes.length === 0) return packed.bodies;
  } catch {
    // falls through to v1
  }
  const { kind, source, correlationId } = envelope;
  return [serializeEnvelope({ v: 1, kind, source, correlationId, records, attempt })];
}

/**
 * Re-queues the unsent records of each message that must not come back whole: one that had
 * records settled (resending those could apply them twice), or one with records that wait for a
 * window or were never tried (SQS redelivery would spend its receive count on them). A message
 * with only transient failures and nothing settled is handed back to SQS as it is.
 */
async function requeueUnsent(deps: EnvelopeConsumerDeps, ledger: Ledger, mustRedeliver: ReadonlySet<number>): Promise<{ requeued: number; deadLettered: number }> {
  const target = deps.requeue;
  let requeued = 0;
  let deadLettered = 0;
  if (!target) return { requeued, deadLettered };
  const now = (deps.now ?? Date.now)();
  const maxMessageBytes = deps.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  await Promise.all(
    [...ledger.unsent].map(async ([message, { envelope, records }]) => {
      if (mustRedeliver.has(message)) return;
      const waitsFree = records.some((r) => r.cause.kind !== "transient");
      if (!ledger.settledSome.has(message) && !waitsFree) return;
      const groups = requeuePlan(records, envelope.attempt ?? 0, target.maxRequeues, now);
      try {
        for (const group of groups) {
          for (const body of requeueBodies(envelope, group.records, group.attempt, maxMessageBytes)) {
            if (group.deadLetter) await target.deadLetter(body);
            else await target.send(body, group.delaySeconds);
          }
        }
        if (groups.some((g) => g.deadLetter)) deadLettered++;
        if (groups.some((g) => !g.deadLetter)) requeued++;
        ledger.failed.delete(message);
      } catch {
        // Could not re-queue: hand the whole message back to SQS instead.
      }
    }),
  );
  return { requeued, deadLettered };
}

// ---------------------------------------------------------------------------------------------
// the engine

export async function consumeEnvelopes(messages: readonly QueueMessage[], deps: EnvelopeConsumerDeps): Promise<ConsumeSummary> {
  const decoded = decode(messages, deps);
  const ledger = new Ledger(deps);
  await sendAll(decoded, deps, ledger);
  const { stored, mustRedeliver } = await storeRefusals(messages, decoded, deps, ledger);
  const { requeued, deadLettered } = await requeueUnsent(deps, ledger, mustRedeliver);
  return {
    failedMessageIds: [...ledger.failed].sort((a, b) => a - b).map((index) => messages[index]?.messageId ?? ""),
    sent: ledger.sent,
    rejected: stored,
    retried: ledger.retried,
    blockedByConfig: ledger.blockedByConfig,
    invalidMessages: decoded.invalid.length,
    configErrors: [...ledger.configErrors],
    requeued,
    deadLettered,
    correlationIds: [...decoded.correlationIds],
    traceHashes: ledger.traceHashes,
    skipped: ledger.skipped,
  };
}
