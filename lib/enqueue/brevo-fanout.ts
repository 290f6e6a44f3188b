import { RetryableError, describeError } from "../util/errors.js";
import type { RejectedStore } from "../queue/rejected-store.js";
import type { QueueSender } from "../queue/sqs-sender.js";
import type { RecordKind } from "../records/envelope.js";
import { packEnvelopesV2, parseQueuedRecords } from "../records/envelope-v2.js";
import type { BrevoConfig } from "../config/brevo.js";

/**
 * The fan-out to Brevo (docs/brevo.md): the records the intake (or the Currents reader) has
 * accepted for Mixpanel, exactly as they go on the events queue, are also put on the Brevo
 * queue when `brevo.sync` enables their kind, in the same versioned envelope. The Brevo
 * forwarder maps them (lib/brevo/events.ts, contacts.ts, companies.ts), so both destinations
 * see the same record, and each queue has its own consumer: an outage on one side never holds
 * the other back.
 *
 * Both queues are packed by the same v2 packer under the same cap, so a record too large for
 * one SQS message is too large for both: it was already stored for Mixpanel (with its kind,
 * replayable) and is left out here without a second rejection.
 */
export function brevoKinds(config: BrevoConfig | undefined): Set<RecordKind> {
  const kinds = new Set<RecordKind>();
  if (!config) return kinds;
  if (config.sync.events) kinds.add("event");
  if (config.sync.profiles) kinds.add("profile");
  if (config.sync.groups) kinds.add("group");
  return kinds;
}

export function brevoQueueBodies(
  config: BrevoConfig | undefined,
  linesByKind: ReadonlyMap<RecordKind, readonly string[]>,
  source: string,
  correlationId: string,
  maxMessageBytes: number,
): string[] {
  const kinds = brevoKinds(config);
  const bodies: string[] = [];
  for (const [kind, lines] of linesByKind) {
    if (!kinds.has(kind) || lines.length === 0) continue;
    bodies.push(...packEnvelopesV2(kind, source, correlationId, lines, { maxMessageBytes }).bodies);
  }
  return bodies;
}

/**
 * Puts the fan-out bodies on the Brevo queue. When that queue cannot be reached, the records
 * go to the rejected store instead (`destination: "brevo"`, code `brevo_queue_unavailable`,
 * replayable with `npm run replay`), so the sender is not asked to resend a batch the events
 * queue already took (a profile `$add` would then reach Mixpanel twice). Throws only when
 * both fail, and then the intake answers 503 as for any queueing failure.
 */
export async function sendToBrevoQueue(
  deps: { readonly queue: QueueSender; readonly rejected: RejectedStore },
  queueUrl: string,
  bodies: readonly string[],
  stageOfFailure: "intake" | "reader",
): Promise<void> {
  if (bodies.length === 0) return;
  try {
    await deps.queue.send(queueUrl, bodies);
  } catch (error) {
    const reason = `Brevo queue unavailable: ${describeError(error)}`.slice(0, 500);
    try {
      for (const body of bodies) {
        const envelope = parseQueuedRecords(body);
        await deps.rejected.put({
          source: envelope.source,
          correlationId: envelope.correlationId,
          kind: envelope.kind,
          stageOfFailure,
          destination: "brevo",
          items: envelope.lines().map((line, index) => ({ index, code: "brevo_queue_unavailable", reason, line })),
        });
      }
    } catch (storeError) {
      throw new RetryableError(`cannot queue for Brevo (${describeError(error)}) nor store the records (${describeError(storeError)})`);
    }
  }
}
