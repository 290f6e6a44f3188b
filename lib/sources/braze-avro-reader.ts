import { createHash } from "node:crypto";
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import type { StageConfig } from "../config/stage.js";
import { RetryableError, ValidationError, describeError } from "../errors.js";
import type { RejectedItemRecord, RejectedStore } from "../queue/rejected-store.js";
import type { QueueSender } from "../queue/sqs-sender.js";
import { packEnvelopes } from "../records/envelope.js";
import { protectItems } from "../pii/items.js";
import type { PiiPolicySource } from "../pii/source.js";
import { mapBrazeAvroFile } from "./braze-avro.js";
import type { MappedItem } from "./types.js";

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
  readonly s3: S3Client;
  readonly config: StageConfig;
  readonly queue: QueueSender;
  readonly queueUrl: string;
  readonly rejected: RejectedStore;
  readonly maxMessageBytes: number;
  readonly nowMs: () => number;
  /** The stage's personal-data rules, applied before anything is queued or stored; absent = none. */
  readonly pii?: PiiPolicySource;
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

function isMissingObject(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const status = "$metadata" in error && typeof error.$metadata === "object" && error.$metadata !== null && "httpStatusCode" in error.$metadata
    ? error.$metadata.httpStatusCode
    : undefined;
  return error.name === "NoSuchKey" || status === 404;
}

async function fetchObject(ref: CurrentsObjectRef, s3: S3Client): Promise<Uint8Array | { missing: string }> {
  try {
    const response = await s3.send(
      new GetObjectCommand({ Bucket: ref.bucket, Key: ref.key, ...(ref.versionId ? { VersionId: ref.versionId } : {}) }),
    );
    if (!response.Body) throw new RetryableError(`GetObject s3://${ref.bucket}/${ref.key} returned no body`);
    return await response.Body.transformToByteArray();
  } catch (error) {
    if (error instanceof RetryableError) throw error;
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
    items = protectItems(await mapBrazeAvroFile(bytes, ref.key, { nowMs: deps.nowMs(), config: deps.config }), policy);
  } catch (error) {
    if (error instanceof ValidationError) return fileRejection(error.message);
    throw error;
  }

  const lines: string[] = [];
  const lineIndexes: number[] = [];
  const rejections: RejectedItemRecord[] = [];
  for (const item of items) {
    if (item.ok) {
      lines.push(item.line);
      lineIndexes.push(item.index);
    } else {
      rejections.push({ index: item.index, code: item.code, reason: item.reason, payload: item.payload, ...(item.dropped ? { dropped: true } : {}) });
    }
  }
  const packed = packEnvelopes("event", BRAZE_AVRO_SOURCE, correlationId, lines, deps.maxMessageBytes);
  for (const position of packed.oversizedIndexes) {
    rejections.push({
      index: lineIndexes[position] ?? 0,
      code: "record_too_large_for_queue",
      reason: `record does not fit in one SQS message of ${deps.maxMessageBytes} bytes`,
      line: lines[position],
    });
  }
  rejections.sort((a, b) => a.index - b.index);

  await Promise.all([
    packed.bodies.length > 0 ? deps.queue.send(deps.queueUrl, packed.bodies) : Promise.resolve(),
    rejections.length > 0
      ? deps.rejected.put({ source: BRAZE_AVRO_SOURCE, kind: "event", correlationId, stageOfFailure: "reader", items: rejections })
      : Promise.resolve(""),
  ]);

  const dropped = rejections.filter((item) => item.dropped).length;
  return {
    key: ref.key,
    correlationId,
    records: items.length,
    accepted: lines.length - packed.oversizedIndexes.length,
    rejected: rejections.length - dropped,
    dropped,
  };
}
