import type { Context, SQSBatchResponse, SQSEvent } from "aws-lambda";
import { brevoForwarderDepsFrom } from "../../lib/brevo/runtime.js";
import { describeError } from "../../lib/errors.js";
import { consumeEnvelopes } from "../../lib/forwarder/process.js";
import { count, logger, publishMetrics } from "../../lib/observability/telemetry.js";
import { createLiteRuntimeContext, once } from "../../lib/runtime/lite-context.js";

/**
 * Brevo queue → Brevo events, contacts and companies (lib/brevo/forwarder.ts). Thin adapter:
 * SQS partial batch failures, metrics, logs. `BrevoRecordsBlockedByConfig` drives the
 * credentials alarm (infra/resources/alarms.yml).
 */
let remainingMs: () => number = () => Number.POSITIVE_INFINITY;
const deps = once(() => brevoForwarderDepsFrom(createLiteRuntimeContext(), () => remainingMs()));

export async function handler(event: SQSEvent, context: Context): Promise<SQSBatchResponse> {
  const messages = event.Records.map((record) => ({ messageId: record.messageId, body: record.body }));
  count("BrevoMessagesReceived", messages.length);
  try {
    remainingMs = () => context.getRemainingTimeInMillis();
    const summary = await consumeEnvelopes(messages, deps());
    count("BrevoRecordsSent", summary.imported);
    count("BrevoRecordsRejected", summary.rejected);
    count("BrevoRecordsSkipped", Object.values(summary.skipped).reduce((a, b) => a + b, 0));
    count("BrevoRecordsRetried", summary.retried);
    count("BrevoRecordsBlockedByConfig", summary.blockedByConfig);
    count("BrevoInvalidMessages", summary.invalidMessages);
    count("BrevoMessagesRequeued", summary.requeued);
    count("BrevoMessagesDeadLettered", summary.deadLettered);
    for (const reason of summary.configErrors) logger.error("Brevo configuration error: records kept for redelivery", { reason });
    logger.info("brevo batch", { messages: messages.length, ...summary, failedMessageIds: summary.failedMessageIds.length });
    return { batchItemFailures: summary.failedMessageIds.map((itemIdentifier) => ({ itemIdentifier })) };
  } catch (error) {
    // A bad configuration (no brevo block, bad BREVO_API_URL) or an unexpected fault: hand every message back.
    logger.error("brevo-forwarder failed; the whole batch will be redelivered", { error: describeError(error) });
    count("BrevoRecordsBlockedByConfig", messages.length);
    return { batchItemFailures: messages.map(({ messageId }) => ({ itemIdentifier: messageId })) };
  } finally {
    publishMetrics();
  }
}
