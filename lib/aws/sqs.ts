import { type AwsTarget, type CallPath, awsCall } from "./aws-call.js";

/**
 * The SQS calls the functions make (SendMessage, SendMessageBatch) through the SDK's SQSClient
 * with only those two commands imported (sqs-calls.ts), loaded at the first call: the intake
 * sends on its first request anyway, and the other functions send only to requeue, dead-letter
 * or queue pages. The SDK checks SQS's MD5OfMessageBody of every sent message
 * (middleware-sdk-sqs) and throws on a mismatch. Requests go to the configured (or regional)
 * endpoint, never to the queue URL's host (`useQueueUrlAsEndpoint: false`): the local stack
 * serves every queue from one server.
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

export function createSqs(target: AwsTarget, path: CallPath = "consumer"): SqsApi {
  const calls = () => import("./sqs-calls.js");
  return {
    async sendMessage(queueUrl, body, delaySeconds) {
      const { sendMessage } = await calls();
      await awsCall(() => sendMessage(target, path, queueUrl, body, delaySeconds));
    },
    async sendMessageBatch(queueUrl, entries) {
      const { sendMessageBatch } = await calls();
      return awsCall(() => sendMessageBatch(target, path, queueUrl, entries));
    },
  };
}
