import type { SQSBatchResponse, SQSEvent } from "aws-lambda";
import { forwardMessages } from "../../lib/forwarder/mixpanel.js";
import { forwarderDepsFrom } from "../../lib/runtime/forwarder.js";
import { invocationClock, withTelemetry } from "../../lib/observability/handler.js";
import { count, logger } from "../../lib/observability/telemetry.js";
import { logInsertIdHashes } from "../../lib/observability/trace-ids.js";
import { createLiteRuntimeContext, once } from "../../lib/runtime/lite-context.js";

const clock = invocationClock();
const deps = once(() => forwarderDepsFrom(createLiteRuntimeContext(), clock.remainingMs));

const everyMessage = (event: SQSEvent): SQSBatchResponse => ({
  batchItemFailures: event.Records.map(({ messageId }) => ({ itemIdentifier: messageId })),
});

export const handler = withTelemetry(
  clock,
  async (event: SQSEvent): Promise<SQSBatchResponse> => {
    const messages = event.Records.map((record) => ({ messageId: record.messageId, body: record.body }));
    count("MessagesReceived", messages.length);
    const summary = await forwardMessages(messages, deps());
    count("EventsImported", summary.sent);
    count("EventsRejected", summary.rejected);
    count("RecordsRetried", summary.retried);
    count("RecordsBlockedByConfig", summary.blockedByConfig);
    count("InvalidMessages", summary.invalidMessages);
    count("MessagesRequeued", summary.requeued);
    count("MessagesDeadLettered", summary.deadLettered);
    for (const reason of summary.configErrors) {
      logger.error("Mixpanel configuration error: records kept for redelivery", { reason });
    }
    // The log keeps its field names (`imported`), which operators' log queries and `npm run trace` read.
    const { traceHashes, sent, ...counts } = summary;
    logger.info("forwarded batch", { messages: messages.length, imported: sent, ...counts, failedMessageIds: summary.failedMessageIds.length });
    // Events refused or waiting for a retry, by hashed $insert_id (`npm run trace -- --insert-id`); never the ids themselves.
    for (const [outcome, hashes] of Object.entries(traceHashes)) {
      logInsertIdHashes("forwarded records", { outcome, correlationIds: summary.correlationIds }, hashes);
    }
    return { batchItemFailures: summary.failedMessageIds.map((itemIdentifier) => ({ itemIdentifier })) };
  },
  // Bad configuration or an unexpected fault: hand every message back to SQS.
  { failureMessage: "forwarder failed; the whole batch will be redelivered", onFailure: everyMessage },
);
