import { describeError } from "../errors.js";
import { type IngestionClient, type LineOutcome, type PreparedImport, insertIdOf } from "../mixpanel/ingestion.js";
import { insertIdHash } from "../observability/trace-ids.js";
import type { RejectedItemRecord, RejectedStore } from "../queue/rejected-store.js";
import { type RecordKind, serializeEnvelope } from "../records/envelope.js";
import { type QueuedRecords, packEnvelopesV2, parseQueuedRecords } from "../records/envelope-v2.js";

/**
 * The forwarder's whole behaviour, independent of Lambda: unpack envelopes, send
 * their records to Mixpanel, put refused records in the rejected store, and say
 * which SQS messages must be redelivered (any record still owed a retry, or
 * blocked by a configuration error).
 *
 * A message whose records only partly went through is not redelivered whole:
 * resending what Mixpanel already took would be deduped for events (`$insert_id`,
 * docs/vendors/mixpanel-api.md §5) but would apply a profile `$add` or `$append` twice
 * (/engage has no dedup, §6). Its unsent records are re-queued as a new envelope
 * (delayed, `attempt` + 1) and the original is acknowledged; after
 * `maxRequeues` they go to the events DLQ. A message with nothing sent is simply
 * handed back to SQS, whose redrive policy moves it to the DLQ in time.
 *
 * `consumeEnvelopes` is that behaviour for any destination (the Brevo forwarder uses it with
 * its own send, lib/forwarder/brevo.ts); `forwardMessages` is it for Mixpanel.
 */
export interface QueueMessage {
  readonly messageId: string;
  readonly body: string;
}

export interface ForwardSummary {
  readonly failedMessageIds: string[];
  readonly imported: number;
  readonly rejected: number;
  /** Records left for redelivery (transient trouble). */
  readonly retried: number;
  /** Records blocked by credentials/settings. */
  readonly blockedByConfig: number;
  readonly invalidMessages: number;
  readonly configErrors: string[];
  /** Messages whose unsent records were re-queued (or dead-lettered) instead of redelivered whole. */
  readonly requeued: number;
  readonly deadLettered: number;
  /** Intake correlation ids of the envelopes in this batch, for tracing a record end to end. */
  readonly correlationIds: string[];
  /**
   * Hashed `$insert_id`s of the event records Mixpanel refused or that wait for a retry
   * (lib/observability/trace-ids.ts), for `npm run trace`. Imported records are not listed:
   * the edge that queued them logged their hashes with their correlation id, and finding them
   * here would mean decompressing and parsing every line sent as built.
   */
  readonly insertIdHashes: { readonly rejected: string[]; readonly pending: string[] };
  /** Records the destination does not take by design (e.g. a Brevo event without a mapping), by code. */
  readonly skipped: Record<string, number>;
}

/** A record's fate at its destination: Mixpanel's outcomes plus a deliberate skip (settled, counted). */
export type RecordOutcome = LineOutcome | { readonly status: "skipped"; readonly code: string };

export interface ForwarderDeps {
  readonly client: IngestionClient;
  readonly rejected: RejectedStore;
  /** Where partly sent messages' remaining records go; absent = redeliver the whole message. */
  readonly requeue?: {
    send(body: string, delaySeconds: number): Promise<void>;
    deadLetter(body: string): Promise<void>;
    readonly maxRequeues: number;
  };
  /** The SQS message cap, for re-queued envelopes (default 256 KiB). */
  readonly maxMessageBytes?: number;
}

/** SQS DelaySeconds tops out at 15 minutes. */
const MAX_DELAY_SECONDS = 900;

export function requeueDelaySeconds(attempt: number): number {
  return Math.min(MAX_DELAY_SECONDS, 30 * 2 ** attempt);
}

interface LineRef {
  readonly message: number;
  readonly envelope: QueuedRecords;
  /** Position inside the envelope's records. */
  readonly position: number;
}

const DEFAULT_MAX_MESSAGE_BYTES = 262_144;
/**
 * A v2 event message with at least this many records goes to /import as built. Smaller ones
 * (a Braze batch of 100 events is one message) are decompressed and joined with the rest, so
 * a batch of twenty of them is one 2000-event request rather than twenty requests of 100.
 */
export const PREPARED_MIN_RECORDS = 1000;

const SEND_BY_KIND: Record<RecordKind, (client: IngestionClient, lines: readonly string[]) => Promise<LineOutcome[]>> = {
  event: (client, lines) => client.importEvents(lines),
  profile: (client, lines) => client.updateProfiles(lines),
  group: (client, lines) => client.updateGroups(lines),
};

/**
 * Unsent records go back as v2 (fewer bytes; this forwarder reads both). A record that
 * compresses above the message cap (an incompressible v1 record near 256 KiB, whose base64
 * is a third bigger) or cannot be a v2 line keeps the v1 form it fitted in before.
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

export async function forwardMessages(messages: readonly QueueMessage[], deps: ForwarderDeps): Promise<ForwardSummary> {
  return consumeEnvelopes(messages, {
    send: (kind, lines) => SEND_BY_KIND[kind](deps.client, lines),
    sendPrepared: (batches) => deps.client.importPrepared(batches),
    rejected: deps.rejected,
    ...(deps.requeue ? { requeue: deps.requeue } : {}),
    ...(deps.maxMessageBytes !== undefined ? { maxMessageBytes: deps.maxMessageBytes } : {}),
    rejectedCode: "mixpanel_rejected",
    stageOfFailure: "forwarder",
  });
}

export interface EnvelopeConsumerDeps {
  /** One outcome per line, in order. */
  send(kind: RecordKind, lines: readonly string[]): Promise<RecordOutcome[]>;
  /**
   * Sends v2 event messages as built at the edge, one request each (Mixpanel /import); one
   * outcome list per batch. Absent = every message is decoded and sent through `send`.
   */
  sendPrepared?(batches: readonly PreparedImport[]): Promise<RecordOutcome[][]>;
  readonly rejected: RejectedStore;
  readonly requeue?: ForwarderDeps["requeue"];
  readonly maxMessageBytes?: number;
  /** Code stored with each refused record, e.g. `mixpanel_rejected`, `brevo_rejected`. */
  readonly rejectedCode: string;
  readonly stageOfFailure: "forwarder" | "brevo";
  /** Stored with refused records so `npm run replay` sends them back to the right queue (absent = Mixpanel). */
  readonly destination?: "brevo";
}

export async function consumeEnvelopes(messages: readonly QueueMessage[], deps: EnvelopeConsumerDeps): Promise<ForwardSummary> {
  const failed = new Set<number>();
  /** Messages with at least one record that Mixpanel took or refused for good. */
  const settledSome = new Set<number>();
  /** Records still owed a send, per message, in envelope order. */
  const unsent = new Map<number, { envelope: QueuedRecords; lines: { position: number; line: string }[] }>();
  /** Messages that must come back whole because their refused records could not be stored. */
  const mustRedeliver = new Set<number>();
  const linesByKind = new Map<RecordKind, { lines: string[]; refs: LineRef[] }>();
  /** v2 event messages: each one /import request, sent as built at the edge. */
  const prepared: { message: number; envelope: QueuedRecords; batch: PreparedImport }[] = [];
  const invalid: { message: number; reason: string }[] = [];
  const correlationIds = new Set<string>();
  const insertIdHashes = { rejected: [] as string[], pending: [] as string[] };

  messages.forEach((message, index) => {
    let envelope: QueuedRecords;
    try {
      envelope = parseQueuedRecords(message.body);
    } catch (error) {
      invalid.push({ message: index, reason: describeError(error).slice(0, 500) });
      return;
    }
    correlationIds.add(envelope.correlationId);
    if (deps.sendPrepared && envelope.kind === "event" && envelope.gzipped && envelope.count >= PREPARED_MIN_RECORDS) {
      const { body, rawBytes } = envelope.gzipped;
      prepared.push({ message: index, envelope, batch: { gzipped: body, rawBytes, count: envelope.count, lines: () => envelope.lines() } });
      return;
    }
    const group = linesByKind.get(envelope.kind) ?? { lines: [], refs: [] };
    envelope.lines().forEach((line, position) => {
      group.lines.push(line);
      group.refs.push({ message: index, envelope, position });
    });
    linesByKind.set(envelope.kind, group);
  });

  let imported = 0;
  const skipped: Record<string, number> = {};
  let retried = 0;
  let blockedByConfig = 0;
  const configErrors = new Set<string>();
  // Rejections grouped by their origin so the store keeps source and correlation id.
  const rejectedByOrigin = new Map<string, { envelope: QueuedRecords; messages: Set<number>; items: RejectedItemRecord[] }>();

  const keepUnsent = (ref: LineRef, line: string) => {
    const entry = unsent.get(ref.message) ?? { envelope: ref.envelope, lines: [] };
    entry.lines.push({ position: ref.position, line });
    unsent.set(ref.message, entry);
  };

  const settle = (kind: RecordKind, ref: LineRef, outcome: RecordOutcome, lineOf: () => string) => {
    if (kind === "event" && outcome.status !== "imported" && outcome.status !== "skipped") {
      const insertId = insertIdOf(lineOf());
      if (insertId !== undefined) insertIdHashes[outcome.status === "rejected" ? "rejected" : "pending"].push(insertIdHash(insertId));
    }
    switch (outcome.status) {
      case "imported":
        imported++;
        settledSome.add(ref.message);
        return;
      case "skipped":
        skipped[outcome.code] = (skipped[outcome.code] ?? 0) + 1;
        settledSome.add(ref.message);
        return;
      case "rejected": {
        settledSome.add(ref.message);
        const key = `${ref.envelope.source}\u0000${ref.envelope.correlationId}\u0000${kind}`;
        const bucket = rejectedByOrigin.get(key) ?? { envelope: ref.envelope, messages: new Set<number>(), items: [] };
        bucket.messages.add(ref.message);
        bucket.items.push({ index: ref.position, code: deps.rejectedCode, reason: outcome.reason, line: lineOf() });
        rejectedByOrigin.set(key, bucket);
        return;
      }
      case "retry":
        retried++;
        failed.add(ref.message);
        keepUnsent(ref, lineOf());
        return;
      case "config":
        blockedByConfig++;
        configErrors.add(outcome.reason);
        failed.add(ref.message);
        keepUnsent(ref, lineOf());
        return;
    }
  };

  for (const [kind, group] of linesByKind) {
    const outcomes = await deps.send(kind, group.lines);
    outcomes.forEach((outcome, i) => {
      const ref = group.refs[i];
      if (ref) settle(kind, ref, outcome, () => group.lines[i] ?? "");
    });
  }
  if (deps.sendPrepared && prepared.length > 0) {
    const outcomesByMessage = await deps.sendPrepared(prepared.map(({ batch }) => batch));
    prepared.forEach(({ message, envelope }, p) => {
      (outcomesByMessage[p] ?? []).forEach((outcome, position) => {
        settle("event", { message, envelope, position }, outcome, () => envelope.lines()[position] ?? "");
      });
    });
  }

  let rejected = 0;
  await Promise.all([
    ...[...rejectedByOrigin.values()].map(async ({ envelope, messages: origin, items }) => {
      try {
        await deps.rejected.put({
          source: envelope.source,
          correlationId: envelope.correlationId,
          kind: envelope.kind,
          stageOfFailure: deps.stageOfFailure,
          ...(deps.destination ? { destination: deps.destination } : {}),
          items,
        });
        rejected += items.length;
      } catch {
        // Nothing lost: the messages come back and Mixpanel refuses the records again.
        for (const message of origin) {
          failed.add(message);
          mustRedeliver.add(message);
        }
      }
    }),
    ...invalid.map(async ({ message, reason }) => {
      try {
        await deps.rejected.put({
          source: "unknown",
          correlationId: messages[message]?.messageId ?? "unknown",
          stageOfFailure: deps.stageOfFailure,
          ...(deps.destination ? { destination: deps.destination } : {}),
          items: [{ index: 0, code: "invalid_envelope", reason, payload: messages[message]?.body }],
        });
      } catch {
        failed.add(message);
      }
    }),
  ]);

  let requeued = 0;
  let deadLettered = 0;
  const requeue = deps.requeue;
  if (requeue) {
    await Promise.all(
      [...unsent].map(async ([message, { envelope, lines }]) => {
        if (!settledSome.has(message) || mustRedeliver.has(message)) return;
        const attempt = (envelope.attempt ?? 0) + 1;
        const records = lines.sort((a, b) => a.position - b.position).map(({ line }) => line);
        const bodies = requeueBodies(envelope, records, attempt, deps.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES);
        try {
          for (const body of bodies) {
            if (attempt > requeue.maxRequeues) await requeue.deadLetter(body);
            else await requeue.send(body, requeueDelaySeconds(attempt - 1));
          }
          if (attempt > requeue.maxRequeues) deadLettered++;
          else requeued++;
          failed.delete(message);
        } catch {
          // Could not re-queue: hand the whole message back to SQS instead.
        }
      }),
    );
  }

  return {
    failedMessageIds: [...failed].sort((a, b) => a - b).map((index) => messages[index]?.messageId ?? ""),
    imported,
    rejected,
    retried,
    blockedByConfig,
    invalidMessages: invalid.length,
    configErrors: [...configErrors],
    requeued,
    deadLettered,
    correlationIds: [...correlationIds],
    insertIdHashes,
    skipped,
  };
}
