import type { S3Event } from "aws-lambda";
import { requireSetting } from "../../lib/config/env.js";
import { describeError } from "../../lib/errors.js";
import { count, logger, publishMetrics } from "../../lib/observability/telemetry.js";
import { createQueueSender } from "../../lib/queue/sqs-sender.js";
import { piiPolicySource } from "../../lib/pii/source.js";
import { createRuntimeContext, once, rejectedStoreFor } from "../../lib/runtime/context.js";
import {
  type CurrentsObjectRef,
  type CurrentsReaderDeps,
  correlationIdFor,
  decodeS3EventKey,
  readCurrentsObject,
} from "../../lib/sources/braze-avro-reader.js";

/**
 * S3 ObjectCreated → Braze Currents Avro file → events queue. Thin adapter over
 * lib/sources/braze-avro-reader.ts. S3 invokes Lambda asynchronously: a thrown error
 * makes Lambda retry the whole event (then its on-failure destination); re-reading a
 * file re-queues identical records, which Mixpanel dedupes on `$insert_id`.
 */
const deps = once((): CurrentsReaderDeps => {
  const runtime = createRuntimeContext();
  return {
    s3: runtime.s3,
    config: runtime.config,
    queue: createQueueSender(runtime.sqs, runtime.env.SQS_MAX_MESSAGE_BYTES),
    queueUrl: requireSetting(runtime.env, "EVENTS_QUEUE_URL"),
    rejected: rejectedStoreFor(runtime),
    maxMessageBytes: runtime.env.SQS_MAX_MESSAGE_BYTES,
    nowMs: Date.now,
    pii: piiPolicySource(runtime.config, runtime.env, runtime.secrets),
  };
});

export async function handler(event: S3Event): Promise<void> {
  let current: CurrentsObjectRef | undefined;
  try {
    for (const record of event.Records) {
      current = {
        bucket: record.s3.bucket.name,
        key: decodeS3EventKey(record.s3.object.key),
        versionId: record.s3.object.versionId,
        eTag: record.s3.object.eTag,
      };
      const summary = await readCurrentsObject(current, deps());
      count("EventsAccepted", summary.accepted);
      count("EventsRejected", summary.rejected);
      count("EventsDropped", summary.dropped);
      logger.info("currents avro object", { ...summary });
    }
  } catch (error) {
    // The same correlation id the object's queued records and rejections carry, so the cause can be traced.
    logger.error("currents reader failed; Lambda will retry the S3 event", {
      error: describeError(error),
      stack: error instanceof Error ? error.stack : undefined,
      ...(current ? { correlationId: correlationIdFor(current), bucket: current.bucket, key: current.key } : {}),
    });
    throw error;
  } finally {
    publishMetrics();
  }
}
