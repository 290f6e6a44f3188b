import { BatchProcessor, EventType, processPartialResponse } from "@aws-lambda-powertools/batch";
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";
import { deliverMessage } from "../../lib/destinations/deliver.js";
import { describeError } from "../../lib/util/errors.js";
import { invocationClock, withTelemetry } from "../../lib/observability/handler.js";
import { count, logger } from "../../lib/observability/telemetry.js";
import { createLiteRuntimeContext, once } from "../../lib/runtime/lite-context.js";
import { deliveryDepsFrom } from "./wiring.js";

/**
 * SQS deliveries queue → one page to one destination per record. A thrown error
 * makes the record a batchItemFailure (ReportBatchItemFailures); see
 * lib/destinations/deliver.ts for what is retried and what is permanent.
 */
const runtime = once(() => createLiteRuntimeContext());
const processor = new BatchProcessor(EventType.SQS);
const clock = invocationClock();
/** Once per container: store, secrets cache, settings and the Brevo rate gate survive between invocations. */
const deps = once(() => deliveryDepsFrom(runtime(), clock.remainingMs));

const OUTCOME_METRIC = {
  delivered: "CohortPagesDelivered",
  duplicate: "CohortPagesDuplicate",
  dead_lettered: "CohortPagesDeadLettered",
  stale: "CohortPagesStale",
} as const;

export const handler = withTelemetry(
  clock,
  async (event: SQSEvent, _invocation, context: Context | undefined): Promise<SQSBatchResponse> => {
    const shared = deps();
    const recordHandler = async (record: SQSRecord) => {
      try {
        const receives = Number(record.attributes.ApproximateReceiveCount);
        const outcome = await deliverMessage(record.body, shared, Number.isFinite(receives) ? receives : 1);
        count(OUTCOME_METRIC[outcome], 1);
      } catch (error) {
        count("CohortPagesFailed", 1);
        logger.warn("cohort page not delivered; SQS will retry", { messageId: record.messageId, error: describeError(error) });
        throw error;
      }
    };
    return await processPartialResponse(event, recordHandler, processor, {
      ...(context ? { context } : {}),
      throwOnFullBatchFailure: false,
      // One at a time: records share the Brevo rate gate, and a page must not wait behind parallel ones.
      processInParallel: false,
    });
  },
  {
    failureMessage: "webhook delivery failed; the whole batch will be redelivered",
    onFailure: (event: SQSEvent) => ({ batchItemFailures: event.Records.map((r) => ({ itemIdentifier: r.messageId })) }),
  },
);
