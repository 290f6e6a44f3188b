import type { SqsApi, SqsEntry } from "../aws/sqs.js";
import { RetryableError } from "../util/errors.js";
import { groupByCaps } from "../util/batching.js";

/** SendMessageBatch takes at most 10 entries, and their total size counts against the message cap. */
export const MAX_BATCH_ENTRIES = 10;
/**
 * Sends of the entries SQS refused inside a successful answer (the SDK does not retry those).
 * A call that failed as a whole was already retried by the SDK client (lib/aws/aws-call.ts sets
 * its attempts per call path), so it is not retried again here: on the intake that would
 * multiply the attempts past API Gateway's 30 s.
 */
const MAX_ATTEMPTS = 3;

export interface QueueSender {
  /** Sends every body or throws RetryableError; partial sends are retried entry by entry. */
  send(queueUrl: string, bodies: readonly string[]): Promise<void>;
}

/** Groups bodies into SendMessageBatch calls under both the entry count and the total byte cap. */
export function planBatches(bodies: readonly string[], maxBatchBytes: number): string[][] {
  return groupByCaps(bodies, (body) => Buffer.byteLength(body), MAX_BATCH_ENTRIES, maxBatchBytes);
}

export function createQueueSender(client: SqsApi, maxBatchBytes: number): QueueSender {
  async function sendBatch(queueUrl: string, bodies: string[]): Promise<void> {
    let pending: SqsEntry[] = bodies.map((body, i) => ({ Id: String(i), MessageBody: body }));
    for (let attempt = 1; pending.length > 0; attempt++) {
      let failedIds: Set<string>;
      try {
        const failed = await client.sendMessageBatch(queueUrl, pending);
        failedIds = new Set(failed.map((failure) => failure.Id));
        if (failedIds.size > 0 && attempt >= MAX_ATTEMPTS) {
          const reasons = failed.map((f) => `${f.Code}: ${f.Message}`).join("; ");
          throw new RetryableError(`SQS refused ${failedIds.size} message(s): ${reasons}`);
        }
      } catch (error) {
        if (error instanceof RetryableError) throw error;
        throw new RetryableError(`SQS SendMessageBatch failed: ${String(error)}`);
      }
      pending = pending.filter((entry) => failedIds.has(entry.Id));
    }
  }

  return {
    async send(queueUrl, bodies) {
      for (const batch of planBatches(bodies, maxBatchBytes)) await sendBatch(queueUrl, batch);
    },
  };
}
