import { SQSClient, SendMessageBatchCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { type AwsTarget, type CallPath, SMALL_CALL_TIMEOUT_MS, awsCall, clientConfig, httpHandlerOptions } from "./aws-call.js";

/**
 * The SQS calls the functions make (SendMessage, SendMessageBatch) through the SDK's SQSClient
 * with only those two commands imported, so the bundle carries no other operation. The SDK
 * checks SQS's MD5OfMessageBody of every sent message (middleware-sdk-sqs) and throws on a
 * mismatch. Requests go to the configured (or regional) endpoint, never to the queue URL's
 * host (`useQueueUrlAsEndpoint: false`): the local stack serves every queue from one server.
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
  // Built at the first call, as the SDK resolves credentials at the first call anyway.
  let client: SQSClient | undefined;
  const sqs = (): SQSClient =>
    (client ??= new SQSClient({
      ...clientConfig(target, path),
      useQueueUrlAsEndpoint: false,
      requestHandler: new NodeHttpHandler(httpHandlerOptions(SMALL_CALL_TIMEOUT_MS)),
    }));
  return {
    async sendMessage(queueUrl, body, delaySeconds) {
      await awsCall(() =>
        sqs().send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body, ...(delaySeconds !== undefined ? { DelaySeconds: delaySeconds } : {}) })),
      );
    },
    async sendMessageBatch(queueUrl, entries) {
      const answer = await awsCall(() => sqs().send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries.map((entry) => ({ ...entry })) })));
      return (answer.Failed ?? []).map((failure) => ({ Id: failure.Id ?? "", Code: failure.Code ?? "?", Message: failure.Message ?? "" }));
    },
  };
}
