import { randomUUID } from "node:crypto";
import * as z from "../util/zod.js";
import type { S3Api } from "../aws/s3.js";
import { RetryableError } from "../errors.js";
import { recordKindSchema } from "../records/envelope.js";
import { stringifyAnyDepth } from "../util/deep-json.js";

/**
 * The rejected-events store: every record the relay could not send, with its
 * reason, as one JSON object per rejection batch under `rejected/` in S3, where an
 * operator can read it and `npm run replay` can send it again after a fix.
 * Key: <prefix><source>/<yyyy-mm-dd>/<iso time>-<correlation id>-<step>-<uuid>.json; the
 * random part keeps writes from concurrent containers from overwriting each other.
 */
export const rejectedItemSchema = z.object({
  /** Position in the original request or batch. */
  index: z.number().check(z.int(), z.nonnegative()),
  code: z.string(),
  reason: z.string(),
  /** The Mixpanel record as it was (or would have been) sent: replayable as is. */
  line: z.optional(z.string()),
  /** The input as received, when it never became a Mixpanel record. */
  payload: z.optional(z.unknown()),
  /** Expected skips (e.g. Braze users without an external id) rather than errors. */
  dropped: z.optional(z.boolean()),
});

export const rejectedBatchSchema = z.object({
  v: z.literal(1),
  stage: z.string(),
  source: z.string(),
  kind: z.optional(recordKindSchema),
  correlationId: z.string(),
  rejectedAt: z.string(),
  /** Which step refused the items: intake validation, Mixpanel, an envelope we could not read… */
  stageOfFailure: z.enum(["intake", "forwarder", "reader", "brevo"]),
  /** Which destination refused the items; absent = Mixpanel. `npm run replay` re-queues them for it. */
  destination: z.optional(z.enum(["mixpanel", "brevo"])),
  items: z.array(rejectedItemSchema).check(z.minLength(1)),
});

export type RejectedItemRecord = z.infer<typeof rejectedItemSchema>;
export type RejectedBatch = z.infer<typeof rejectedBatchSchema>;

export interface RejectedStore {
  put(batch: Omit<RejectedBatch, "v" | "rejectedAt" | "stage">): Promise<string>;
}

/**
 * JSON.stringify recurses, so a payload nested thousands of levels deep (valid JSON that
 * JSON.parse accepts, refused at intake as `too_deep`) throws RangeError. Such a batch is
 * written with stringifyDeep, which does not recurse, so the payload is kept as received
 * rather than failing the whole batch (the sender would retry the same body forever).
 */
export function serializeBatch(batch: RejectedBatch): string {
  return stringifyAnyDepth(batch);
}

export function rejectedKey(prefix: string, source: string, at: Date, correlationId: string, suffix: string): string {
  const iso = at.toISOString();
  return `${prefix}${source}/${iso.slice(0, 10)}/${iso.replace(/[:.]/g, "-")}-${correlationId}-${suffix}.json`;
}

export function createRejectedStore(options: {
  s3: Pick<S3Api, "putObject">;
  bucket: string;
  prefix: string;
  stage: string;
  now: () => Date;
  newId?: () => string;
}): RejectedStore {
  const newId = options.newId ?? randomUUID;
  return {
    async put(batch) {
      const at = options.now();
      const key = rejectedKey(options.prefix, batch.source, at, batch.correlationId, `${batch.stageOfFailure}-${newId()}`);
      const body: RejectedBatch = { v: 1, stage: options.stage, rejectedAt: at.toISOString(), ...batch };
      try {
        await options.s3.putObject(options.bucket, key, serializeBatch(body), "application/json");
      } catch (error) {
        // Nothing may be lost: if the store is down, the caller must not acknowledge.
        throw new RetryableError(`cannot write to the rejected store s3://${options.bucket}/${key}: ${String(error)}`);
      }
      return key;
    },
  };
}
