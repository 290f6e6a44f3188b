import {
  DeleteMessageBatchCommand,
  ReceiveMessageCommand,
  type Message,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";

/**
 * Plays the part of Lambda's SQS event source mapping: long-polls a queue, hands
 * the real handler a real SQSEvent, deletes what succeeded and leaves the
 * `batchItemFailures` to reappear after the visibility timeout, so the queue's
 * redrive policy moves them to the DLQ after maxReceiveCount, as in AWS.
 */
export interface PollerOptions {
  readonly sqs: SQSClient;
  readonly queueUrl: string;
  readonly queueArn: string;
  readonly region: string;
  readonly functionName: string;
  readonly handler: (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;
  /** Lambda's batch size: up to this many messages per invocation. */
  readonly batchSize: number;
  /** The simulated Lambda timeout, exposed through context.getRemainingTimeInMillis(). */
  readonly timeoutMs: number;
  readonly onBatch?: (summary: { received: number; failed: number; functionName: string }) => void;
  readonly onError?: (error: unknown) => void;
}

export function lambdaContext(functionName: string, timeoutMs: number): Context {
  const deadline = Date.now() + timeoutMs;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: "$LATEST",
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${functionName}`,
    memoryLimitInMB: "512",
    awsRequestId: crypto.randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: "local",
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

function toRecord(message: Message, options: PollerOptions): SQSRecord {
  const attributes = message.Attributes ?? {};
  return {
    messageId: message.MessageId ?? "",
    receiptHandle: message.ReceiptHandle ?? "",
    body: message.Body ?? "",
    attributes: {
      ApproximateReceiveCount: attributes.ApproximateReceiveCount ?? "1",
      SentTimestamp: attributes.SentTimestamp ?? String(Date.now()),
      SenderId: attributes.SenderId ?? "local",
      ApproximateFirstReceiveTimestamp: attributes.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: message.MD5OfBody ?? "",
    eventSource: "aws:sqs",
    eventSourceARN: options.queueArn,
    awsRegion: options.region,
  };
}

export class SqsPoller {
  private running = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly options: PollerOptions) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** Receives and processes one batch; answers how many messages it saw. */
  async pollOnce(waitSeconds = 1): Promise<number> {
    const { sqs, queueUrl } = this.options;
    const messages: Message[] = [];
    while (messages.length < this.options.batchSize) {
      const result = await sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: Math.min(10, this.options.batchSize - messages.length),
          WaitTimeSeconds: messages.length === 0 ? waitSeconds : 0,
          MessageSystemAttributeNames: ["All"],
        }),
      );
      const received = result.Messages ?? [];
      messages.push(...received);
      if (received.length === 0) break;
    }
    if (messages.length === 0) return 0;

    const event: SQSEvent = { Records: messages.map((message) => toRecord(message, this.options)) };
    let failedIds: Set<string>;
    try {
      const response = await this.options.handler(event, lambdaContext(this.options.functionName, this.options.timeoutMs));
      failedIds = new Set(response.batchItemFailures.map((failure) => failure.itemIdentifier));
    } catch (error) {
      // A thrown handler error fails the whole batch, as in Lambda.
      this.options.onError?.(error);
      failedIds = new Set(messages.map((message) => message.MessageId ?? ""));
    }
    const succeeded = messages.filter((message) => !failedIds.has(message.MessageId ?? ""));
    for (let i = 0; i < succeeded.length; i += 10) {
      await sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: succeeded.slice(i, i + 10).map((message, j) => ({ Id: String(j), ReceiptHandle: message.ReceiptHandle ?? "" })),
        }),
      );
    }
    this.options.onBatch?.({ received: messages.length, failed: failedIds.size, functionName: this.options.functionName });
    return messages.length;
  }

  private async run(): Promise<void> {
    while (this.running) {
      try {
        await this.pollOnce(1);
      } catch (error) {
        this.options.onError?.(error);
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }
}
