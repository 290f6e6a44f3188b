import * as z from "../util/zod.js";
import { type AwsTarget, awsJsonCall, createAwsCaller } from "./aws-call.js";

/**
 * The SQS calls the functions make, over SQS's JSON 1.0 protocol
 * (`X-Amz-Target: AmazonSQS.<Operation>`), which AWS SQS and fauxqs both speak.
 * Requests go to the configured (or regional) endpoint, never to the queue URL's host.
 */
export interface SqsEntry {
  readonly Id: string;
  readonly MessageBody: string;
}

export interface SqsFailedEntry {
  readonly Id: string;
  readonly Code: string;
  readonly Message: string;
}

export interface SqsApi {
  sendMessage(queueUrl: string, body: string, delaySeconds?: number): Promise<void>;
  /** Answers the entries SQS refused; throws when the call itself failed. */
  sendMessageBatch(queueUrl: string, entries: readonly SqsEntry[]): Promise<SqsFailedEntry[]>;
}

const sendMessageBatchResultSchema = z.object({
  Failed: z.nullish(z.array(z.object({ Id: z.string(), Code: z.optional(z.string()), Message: z.optional(z.string()) }))),
});

export function createSqs(target: AwsTarget): SqsApi {
  const caller = createAwsCaller("sqs", target);
  return {
    async sendMessage(queueUrl, body, delaySeconds) {
      await awsJsonCall(caller, "1.0", "AmazonSQS.SendMessage", {
        QueueUrl: queueUrl,
        MessageBody: body,
        ...(delaySeconds !== undefined ? { DelaySeconds: delaySeconds } : {}),
      });
    },
    async sendMessageBatch(queueUrl, entries) {
      const answer = await awsJsonCall(caller, "1.0", "AmazonSQS.SendMessageBatch", { QueueUrl: queueUrl, Entries: entries });
      const parsed = sendMessageBatchResultSchema.safeParse(answer);
      if (!parsed.success) throw new Error("SQS SendMessageBatch answered an unexpected shape");
      return (parsed.data.Failed ?? []).map((failure) => ({ Id: failure.Id, Code: failure.Code ?? "?", Message: failure.Message ?? "" }));
    },
  };
}
