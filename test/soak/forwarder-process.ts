import type { Context, SQSBatchResponse, SQSEvent } from "aws-lambda";
import { createSqsClient } from "../../infra/aws/sdk-clients.js";
import { SqsPoller } from "../../infra/local/sqs-poller.js";

/**
 * One forwarder "Lambda container" for the soak: the real forwarder handler fed by the same
 * poller the local stack uses (Lambda's SQS event source: receive, invoke, delete what
 * succeeded, leave batchItemFailures for redelivery). Prints `busy` when an invocation starts
 * and `idle` when it returns, so the soak can kill it mid-batch.
 */
const { handler } = await import("../../functions/forwarder/handler.js");

const sqs = createSqsClient(process.env.AWS_REGION ?? "us-east-1", process.env.AWS_ENDPOINT_URL);
const poller = new SqsPoller({
  sqs,
  queueUrl: process.env.EVENTS_QUEUE_URL ?? "",
  queueArn: process.env.EVENTS_QUEUE_ARN ?? "",
  region: process.env.AWS_REGION ?? "us-east-1",
  functionName: "forwarder",
  batchSize: Number(process.env.FORWARDER_BATCH_SIZE ?? 10),
  timeoutMs: Number(process.env.FORWARDER_TIMEOUT_MS ?? 20_000),
  handler: async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
    process.stdout.write("busy\n");
    try {
      return await handler(event, context);
    } finally {
      process.stdout.write("idle\n");
    }
  },
  onError: (error) => process.stderr.write(`forwarder poller error: ${String(error)}\n`),
});
poller.start();
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
process.on("SIGTERM", () => void poller.stop().then(() => process.exit(0)));
