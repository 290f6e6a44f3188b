import { describeError } from "../errors.js";
import type { IngestionClient, LineOutcome } from "../mixpanel/ingestion.js";
import type { RejectedItemRecord, RejectedStore } from "../queue/rejected-store.js";
import { type Envelope, type RecordKind, parseEnvelope } from "../records/envelope.js";

/**
 * The forwarder's whole behaviour, independent of Lambda: unpack envelopes, send
 * their records to Mixpanel, put refused records in the rejected store, and say
 * which SQS messages must be redelivered (any record still owed a retry, or
 * blocked by a configuration error). Records Mixpanel already ingested in a
 * redelivered message are resent, and Mixpanel dedupes them by `$insert_id`
 * (reference/mixpanel-api.md §5): the envelope keeps that id and `time` fixed.
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
  /** Intake correlation ids of the envelopes in this batch, for tracing a record end to end. */
  readonly correlationIds: string[];
}

export interface ForwarderDeps {
  readonly client: IngestionClient;
  readonly rejected: RejectedStore;
}

interface LineRef {
  readonly message: number;
  readonly envelope: Envelope;
  /** Position inside the envelope's records. */
  readonly position: number;
}

const SEND_BY_KIND: Record<RecordKind, (client: IngestionClient, lines: readonly string[]) => Promise<LineOutcome[]>> = {
  event: (client, lines) => client.importEvents(lines),
  profile: (client, lines) => client.updateProfiles(lines),
  group: (client, lines) => client.updateGroups(lines),
};

export async function forwardMessages(messages: readonly QueueMessage[], deps: ForwarderDeps): Promise<ForwardSummary> {
  const failed = new Set<number>();
  const linesByKind = new Map<RecordKind, { lines: string[]; refs: LineRef[] }>();
  const invalid: { message: number; reason: string }[] = [];
  const correlationIds = new Set<string>();

  messages.forEach((message, index) => {
    let envelope: Envelope;
    try {
      envelope = parseEnvelope(message.body);
    } catch (error) {
      invalid.push({ message: index, reason: describeError(error).slice(0, 500) });
      return;
    }
    correlationIds.add(envelope.correlationId);
    const group = linesByKind.get(envelope.kind) ?? { lines: [], refs: [] };
    envelope.records.forEach((line, position) => {
      group.lines.push(line);
      group.refs.push({ message: index, envelope, position });
    });
    linesByKind.set(envelope.kind, group);
  });

  let imported = 0;
  let retried = 0;
  let blockedByConfig = 0;
  const configErrors = new Set<string>();
  // Rejections grouped by their origin so the store keeps source and correlation id.
  const rejectedByOrigin = new Map<string, { envelope: Envelope; messages: Set<number>; items: RejectedItemRecord[] }>();

  for (const [kind, group] of linesByKind) {
    const outcomes = await SEND_BY_KIND[kind](deps.client, group.lines);
    outcomes.forEach((outcome, i) => {
      const ref = group.refs[i];
      if (!ref) return;
      switch (outcome.status) {
        case "imported":
          imported++;
          return;
        case "rejected": {
          const key = `${ref.envelope.source}\u0000${ref.envelope.correlationId}\u0000${kind}`;
          const bucket = rejectedByOrigin.get(key) ?? { envelope: ref.envelope, messages: new Set<number>(), items: [] };
          bucket.messages.add(ref.message);
          bucket.items.push({ index: ref.position, code: "mixpanel_rejected", reason: outcome.reason, line: group.lines[i] });
          rejectedByOrigin.set(key, bucket);
          return;
        }
        case "retry":
          retried++;
          failed.add(ref.message);
          return;
        case "config":
          blockedByConfig++;
          configErrors.add(outcome.reason);
          failed.add(ref.message);
          return;
      }
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
          stageOfFailure: "forwarder",
          items,
        });
        rejected += items.length;
      } catch {
        // Nothing lost: the messages come back and Mixpanel refuses the records again.
        for (const message of origin) failed.add(message);
      }
    }),
    ...invalid.map(async ({ message, reason }) => {
      try {
        await deps.rejected.put({
          source: "unknown",
          correlationId: messages[message]?.messageId ?? "unknown",
          stageOfFailure: "forwarder",
          items: [{ index: 0, code: "invalid_envelope", reason, payload: messages[message]?.body }],
        });
      } catch {
        failed.add(message);
      }
    }),
  ]);

  return {
    failedMessageIds: [...failed].sort((a, b) => a - b).map((index) => messages[index]?.messageId ?? ""),
    imported,
    rejected,
    retried,
    blockedByConfig,
    invalidMessages: invalid.length,
    configErrors: [...configErrors],
    correlationIds: [...correlationIds],
  };
}
