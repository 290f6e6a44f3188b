import { SQSClient, SendMessageBatchCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { type AwsTarget, type CallPath, SMALL_CALL_TIMEOUT_MS, clientConfig, httpHandlerOptions } from "./aws-call.js";

/** The SQSClient and its two commands: what sqs.ts loads at its first call. */
const clients = new Map<string, SQSClient>();

function sqsClientFor(target: AwsTarget, path: CallPath): SQSClient {
  const key = `${target.region} ${target.endpoint ?? ""} ${path}`;
  let client = clients.get(key);
  if (!client) {
    client = new SQSClient({
      ...clientConfig(target, path),
      useQueueUrlAsEndpoint: false,
      requestHandler: new NodeHttpHandler(httpHandlerOptions(SMALL_CALL_TIMEOUT_MS)),
    });
    clients.set(key, client);
  }
  return client;
}

export async function sendMessage(target: AwsTarget, path: CallPath, queueUrl: string, body: string, delaySeconds?: number): Promise<void> {
  await sqsClientFor(target, path).send(
    new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body, ...(delaySeconds !== undefined ? { DelaySeconds: delaySeconds } : {}) }),
  );
}

export async function sendMessageBatch(target: AwsTarget, path: CallPath, queueUrl: string, entries: readonly { readonly Id: string; readonly MessageBody: string }[]): Promise<{ Id: string; Code: string; Message: string }[]> {
  const answer = await sqsClientFor(target, path).send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries.map((entry) => ({ ...entry })) }));
  return (answer.Failed ?? []).map((failure) => ({ Id: failure.Id ?? "", Code: failure.Code ?? "?", Message: failure.Message ?? "" }));
}
