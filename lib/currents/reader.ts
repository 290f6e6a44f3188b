import { createHash } from "node:crypto";
import { isMissingObject } from "../aws/aws-call.js";
import type { S3Api } from "../aws/s3.js";
import type { StageConfig } from "../config/stage.js";
import { RetryableError, ValidationError, describeError } from "../util/errors.js";
import type { RejectedStore } from "../queue/rejected-store.js";
import type { QueueSender } from "../queue/sqs-sender.js";
import { enqueueMappedItems } from "../enqueue/enqueue.js";
import type { PiiPolicySource } from "../pii/source.js";
import { mapBrazeAvroFile } from "../sources/braze-avro.js";
import type { MappedItem } from "../sources/types.js";

/**
 * Reads one Currents Avro object from S3 and puts its events on the events queue,
 * rejections in the rejected store: the S3-triggered twin of the HTTP intake.
 * Throws (so Lambda's async retry runs again) only on transient trouble; a re-run
 * re-queues the same records with the same `$insert_id`s, which Mixpanel dedupes.
 */
export const BRAZE_AVRO_SOURCE = "braze-avro";

export interface CurrentsObjectRef {
  readonly bucket: string;
  /** The decoded key (S3 event notifications URL-encode it; see decodeS3EventKey). */
  readonly key: string;
  readonly versionId?: string | undefined;
  readonly eTag?: string | undefined;
}

export interface CurrentsReaderDeps {
  readonly s3: Pick<S3Api, "getObject">;
  readonly config: StageConfig;
  readonly queue: QueueSender;
  readonly queueUrl: string;
  /** The Brevo queue; set when the stage config has a `brevo` block (lib/enqueue/brevo-fanout.ts). */
  readonly brevoQueueUrl?: string | undefined;
  readonly rejected: RejectedStore;
  readonly maxMessageBytes: number;
  readonly nowMs: () => number;
  /** The stage's personal-data rules, applied before anything is queued or stored; absent = none. */
  readonly pii?: PiiPolicySource;
  /** The erased-ids list (lib/privacy/suppression.ts): their records are dropped as `erased`; absent = none. */
  readonly erasedDigests?: () => Promise<ReadonlySet<string>>;
}

export interface CurrentsReadSummary {
  readonly key: string;
  readonly correlationId: string;
  readonly records: number;
  readonly accepted: number;
  readonly rejected: number;
  readonly dropped: number;
  /** Set when the object as a whole could not be read (stored in the rejected store, not retried). */
  readonly unreadable?: string;
  /** Hashed `$insert_id`s of the events queued, for the handler's log line (`npm run trace`). */
  readonly insertIdHashes?: readonly string[];
}

/** S3 notifications URL-encode keys with `+` for spaces. */
export function decodeS3EventKey(key: string): string {
  return decodeURIComponent(key.replace(/\+/g, " "));
}

/** Stable per object version, so a retried invocation logs and files under the same id. */
export function correlationIdFor(ref: CurrentsObjectRef): string {
  const identity = [ref.bucket, ref.key, ref.versionId ?? "", ref.eTag ?? ""].join("\n");
  return `braze-avro-${createHash("sha256").update(identity).digest("hex").slice(0, 24)}`;
}

async function fetchObject(ref: CurrentsObjectRef, s3: Pick<S3Api, "getObject">): Promise<Uint8Array | { missing: string }> {
  try {
    return await s3.getObject(ref.bucket, ref.key, ref.versionId);
  } catch (error) {
    // Deleted before we got to it: nothing to retry.
    if (isMissingObject(error)) return { missing: `s3://${ref.bucket}/${ref.key} no longer exists` };
    throw new RetryableError(`cannot read s3://${ref.bucket}/${ref.key}: ${describeError(error)}`);
  }
}

export async function readCurrentsObject(ref: CurrentsObjectRef, deps: CurrentsReaderDeps): Promise<CurrentsReadSummary> {
  const correlationId = correlationIdFor(ref);
  const fileRejection = async (reason: string): Promise<CurrentsReadSummary> => {
    await deps.rejected.put({
      source: BRAZE_AVRO_SOURCE,
      correlationId,
      stageOfFailure: "reader",
      items: [{ index: 0, code: "unreadable_object", reason, payload: { bucket: ref.bucket, key: ref.key, versionId: ref.versionId } }],
    });
    return { key: ref.key, correlationId, records: 0, accepted: 0, rejected: 1, dropped: 0, unreadable: reason };
  };

  const bytes = await fetchObject(ref, deps.s3);
  if ("missing" in bytes) return fileRejection(bytes.missing);

  // Throws when the hash key cannot be read, so Lambda retries rather than queue unprotected records.
  const policy = await deps.pii?.();
  let items: MappedItem[];
  try {
    items = await mapBrazeAvroFile(bytes, ref.key, { nowMs: deps.nowMs(), config: deps.config });
  } catch (error) {
    if (error instanceof ValidationError) return fileRejection(error.message);
    throw error;
  }

  const { accepted, rejections, insertIdHashes } = await enqueueMappedItems(items, { source: BRAZE_AVRO_SOURCE, correlationId, stageOfFailure: "reader", policy }, deps);
  const dropped = rejections.filter((item) => item.dropped).length;
  return { key: ref.key, correlationId, records: items.length, accepted, rejected: rejections.length - dropped, dropped, insertIdHashes };
}
