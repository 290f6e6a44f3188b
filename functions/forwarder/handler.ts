import type { Context, SQSBatchResponse, SQSEvent } from "aws-lambda";
import { forwardMessages } from "../../lib/forwarder/process.js";
import { forwarderDepsFrom } from "../../lib/forwarder/runtime.js";
import { count, logger, publishMetrics } from "../../lib/observability/telemetry.js";
import { createLiteRuntimeContext, once } from "../../lib/runtime/lite-context.js";
import { describeError } from "../../lib/errors.js";

/** The running invocation's clock; a container serves one invocation at a time. */
let remainingMs: () => number = () => Number.POSITIVE_INFINITY;
const deps = once(() => forwarderDepsFrom(createLiteRuntimeContext(), () => remainingMs()));

export async function handler(event: SQSEvent, context: Context): Promise<SQSBatchResponse> {
  const messages = event.Records.map((record) => ({ messageId: record.messageId, body: record.body }));
  count("MessagesReceived", messages.length);
  try {
    remainingMs = () => context.getRemainingTimeInMillis();
    const summary = await forwardMessages(messages, deps());
    count("EventsImported", summary.imported);
    count("EventsRejected", summary.rejected);
    count("RecordsRetried", summary.retried);
    count("RecordsBlockedByConfig", summary.blockedByConfig);
    count("InvalidMessages", summary.invalidMessages);
    count("MessagesRequeued", summary.requeued);
    count("MessagesDeadLettered", summary.deadLettered);
    for (const reason of summary.configErrors) {
      logger.error("Mixpanel configuration error: records kept for redelivery", { reason });
    }
    logger.info("forwarded batch", { messages: messages.length, ...summary, failedMessageIds: summary.failedMessageIds.length });
    return { batchItemFailures: summary.failedMessageIds.map((itemIdentifier) => ({ itemIdentifier })) };
  } catch (error) {
    // Bad configuration or an unexpected fault: hand every message back to SQS.
    logger.error("forwarder failed; the whole batch will be redelivered", { error: describeError(error) });
    return { batchItemFailures: messages.map(({ messageId }) => ({ itemIdentifier: messageId })) };
  } finally {
    publishMetrics();
  }
}
