import { type IngestionClient, type LineOutcome, insertIdOf } from "../mixpanel/ingestion.js";
import {
  type ConsumeSummary,
  type QueueMessage,
  type RecordOutcome,
  type RequeueTarget,
  consumeEnvelopes,
} from "../queue/envelope-consumer.js";
import type { RejectedStore } from "../queue/rejected-store.js";
import type { RecordKind } from "../records/envelope.js";

/**
 * The Mixpanel forwarder: the queue's envelope consumer (lib/queue/envelope-consumer.ts) with
 * Mixpanel's send step. Events go to /import, profiles to /engage, groups to /groups
 * (docs/vendors/mixpanel-api.md); an event's `$insert_id` is its trace id. Events re-sent after
 * a partial failure are deduped by `$insert_id` (§5), but /engage has no dedup (§6), which is
 * why the consumer re-queues only what was not sent.
 */
export interface ForwarderDeps {
  readonly client: IngestionClient;
  readonly rejected: RejectedStore;
  /** Where partly sent messages' remaining records go; absent = redeliver the whole message. */
  readonly requeue?: RequeueTarget;
  /** The SQS message cap, for re-queued envelopes (default 256 KiB). */
  readonly maxMessageBytes?: number;
}

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

const SENT: RecordOutcome = { status: "sent" };

/** Mixpanel's line outcomes in the consumer's words: "imported" is "sent"; the rest carry over. */
function neutral(outcomes: readonly LineOutcome[]): RecordOutcome[] {
  return outcomes.map((outcome) => (outcome.status === "imported" ? SENT : outcome));
}

const eventInsertId = (kind: RecordKind, line: string) => (kind === "event" ? insertIdOf(line) : undefined);

export async function forwardMessages(messages: readonly QueueMessage[], deps: ForwarderDeps): Promise<ConsumeSummary> {
  return consumeEnvelopes(messages, {
    send: async (kind, lines) => neutral(await SEND_BY_KIND[kind](deps.client, lines)),
    prepared: {
      minRecords: PREPARED_MIN_RECORDS,
      send: async (batches) => (await deps.client.importPrepared(batches)).map(neutral),
    },
    traceIdOf: eventInsertId,
    rejected: deps.rejected,
    ...(deps.requeue ? { requeue: deps.requeue } : {}),
    ...(deps.maxMessageBytes !== undefined ? { maxMessageBytes: deps.maxMessageBytes } : {}),
    rejectedCode: "mixpanel_rejected",
    stageOfFailure: "forwarder",
  });
}
