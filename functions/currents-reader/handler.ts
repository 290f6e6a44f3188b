import type { S3Event } from "aws-lambda";
import { requireSetting } from "../../lib/config/env.js";
import { invocationClock, withTelemetry } from "../../lib/observability/handler.js";
import { count, logger } from "../../lib/observability/telemetry.js";
import { logInsertIdHashes } from "../../lib/observability/trace-ids.js";
import { createQueueSender } from "../../lib/queue/sqs-sender.js";
import { piiPolicySource } from "../../lib/pii/source.js";
import { brevoQueueUrlFor, createLiteRuntimeContext, once, rejectedStoreFor } from "../../lib/runtime/lite-context.js";
import { erasedDigestsFor } from "../../lib/runtime/erased-ids.js";
import {
  type CurrentsObjectRef,
  type CurrentsReaderDeps,
  correlationIdFor,
  decodeS3EventKey,
  readCurrentsObject,
} from "../../lib/currents/reader.js";

/**
 * S3 ObjectCreated → Braze Currents Avro file → events queue. Thin adapter over
 * lib/currents/reader.ts. S3 invokes Lambda asynchronously: a thrown error
 * makes Lambda retry the whole event (then its on-failure destination); re-reading a
 * file re-queues identical records, which Mixpanel dedupes on `$insert_id`.
 */
const deps = once((): CurrentsReaderDeps => {
  const runtime = createLiteRuntimeContext();
  return {
    s3: runtime.s3,
    config: runtime.config,
    queue: createQueueSender(runtime.sqs, runtime.env.SQS_MAX_MESSAGE_BYTES),
    queueUrl: requireSetting(runtime.env, "EVENTS_QUEUE_URL"),
    brevoQueueUrl: brevoQueueUrlFor(runtime),
    rejected: rejectedStoreFor(runtime),
    maxMessageBytes: runtime.env.SQS_MAX_MESSAGE_BYTES,
    nowMs: Date.now,
    pii: piiPolicySource(runtime.config, runtime.env, runtime.secrets),
    ...erasedDigestsFor(runtime),
  };
});

export const handler = withTelemetry(
  invocationClock(),
  async (event: S3Event, invocation): Promise<void> => {
    for (const record of event.Records) {
      const current: CurrentsObjectRef = {
        bucket: record.s3.bucket.name,
        key: decodeS3EventKey(record.s3.object.key),
        versionId: record.s3.object.versionId,
        eTag: record.s3.object.eTag,
      };
      // The same correlation id the object's queued records and rejections carry, so a failure can be traced.
      invocation.correlate(correlationIdFor(current));
      logger.appendKeys({ bucket: current.bucket, key: current.key });
      const summary = await readCurrentsObject(current, deps());
      count("EventsAccepted", summary.accepted);
      count("EventsRejected", summary.rejected);
      count("EventsDropped", summary.dropped);
      // With the queued events' hashed insert ids, for `npm run trace` (lib/observability/trace-ids.ts).
      const { insertIdHashes, ...counts } = summary;
      logInsertIdHashes("currents avro object", counts, insertIdHashes ?? [], { evenWithout: true });
    }
  },
  { failureMessage: "currents reader failed; Lambda will retry the S3 event" },
);
