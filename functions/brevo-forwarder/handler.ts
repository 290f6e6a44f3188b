import type { SQSBatchResponse, SQSEvent } from "aws-lambda";
import { brevoForwarderDepsFrom } from "../../lib/runtime/brevo-forwarder.js";
import { consumeEnvelopes } from "../../lib/queue/envelope-consumer.js";
import { invocationClock, withTelemetry } from "../../lib/observability/handler.js";
import { count, logger } from "../../lib/observability/telemetry.js";
import { createLiteRuntimeContext, once } from "../../lib/runtime/lite-context.js";

/**
 * Brevo queue → Brevo events, contacts and companies (lib/forwarder/brevo.ts). Thin adapter:
 * SQS partial batch failures, metrics, logs. `BrevoRecordsBlockedByConfig` drives the
 * credentials alarm (infra/resources/alarms.yml).
 */
const clock = invocationClock();
const deps = once(() => brevoForwarderDepsFrom(createLiteRuntimeContext(), clock.remainingMs));

export const handler = withTelemetry(
  clock,
  async (event: SQSEvent): Promise<SQSBatchResponse> => {
    const messages = event.Records.map((record) => ({ messageId: record.messageId, body: record.body }));
    count("BrevoMessagesReceived", messages.length);
    const summary = await consumeEnvelopes(messages, deps());
    count("BrevoRecordsSent", summary.sent);
    count("BrevoRecordsRejected", summary.rejected);
    count("BrevoRecordsSkipped", Object.values(summary.skipped).reduce((a, b) => a + b, 0));
    count("BrevoRecordsRetried", summary.retried);
    count("BrevoRecordsBlockedByConfig", summary.blockedByConfig);
    count("BrevoInvalidMessages", summary.invalidMessages);
    count("BrevoMessagesRequeued", summary.requeued);
    count("BrevoMessagesDeadLettered", summary.deadLettered);
    for (const reason of summary.configErrors) logger.error("Brevo configuration error: records kept for redelivery", { reason });
    // Trace hashes are for the Mixpanel forwarder's trace lines (this variant names no trace id).
    // The log keeps its field names (`imported`), which operators' log queries read.
    const { traceHashes: _hashes, sent, ...counts } = summary;
    logger.info("brevo batch", { messages: messages.length, imported: sent, ...counts, failedMessageIds: summary.failedMessageIds.length });
    return { batchItemFailures: summary.failedMessageIds.map((itemIdentifier) => ({ itemIdentifier })) };
  },
  {
    // A bad configuration (no brevo block, bad BREVO_API_URL) or an unexpected fault: hand every message back.
    failureMessage: "brevo-forwarder failed; the whole batch will be redelivered",
    onFailure: (event: SQSEvent) => {
      count("BrevoRecordsBlockedByConfig", event.Records.length);
      return { batchItemFailures: event.Records.map(({ messageId }) => ({ itemIdentifier: messageId })) };
    },
  },
);
