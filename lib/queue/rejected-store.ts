import { randomUUID } from "node:crypto";
import * as z from "../util/zod.js";
import type { S3Api } from "../aws/s3.js";
import { RetryableError } from "../util/errors.js";
import { recordKindSchema } from "../records/envelope.js";
import { stringifyBounded } from "../util/deep-json.js";

/**
 * The rejected-events store: every record the relay could not send, with its
 * reason, as one JSON object per rejection batch under `rejected/` in S3, where an
 * operator can read it and `npm run replay` can send it again after a fix.
 * Key: <prefix><source>/<yyyy-mm-dd>/<iso time>-<correlation id>-<step>-<uuid>[-part-<n>].json;
 * the random part keeps writes from concurrent containers from overwriting each other.
 *
 * A batch is written as objects of at most MAX_REJECTED_OBJECT_BYTES each (`part` says which),
 * so a large rejection is a few bounded writes rather than one that can fail every retry; an
 * item whose text alone passes MAX_STORED_ITEM_CHARS is kept cut, as `received`, with
 * `truncated: true`.
 */
export const MAX_REJECTED_OBJECT_BYTES = 4 * 1024 * 1024;
/**
 * Mixpanel refuses an event of 1 MB or more (docs/vendors/mixpanel-wire.md §7), so a longer
 * item cannot be replayed as it is; its first million characters are enough to see what it was.
 */
export const MAX_STORED_ITEM_CHARS = 1_000_000;

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
  /** The item's text (its `line`, else its `payload` as JSON) cut at MAX_STORED_ITEM_CHARS, in place of them. */
  received: z.optional(z.string()),
  truncated: z.optional(z.literal(true)),
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
  /** Which of the batch's objects this is, when it needed more than one. */
  part: z.optional(z.object({ number: z.number().check(z.int(), z.positive()), of: z.number().check(z.int(), z.positive()) })),
  items: z.array(rejectedItemSchema).check(z.minLength(1)),
});

export type RejectedItemRecord = z.infer<typeof rejectedItemSchema>;
export type RejectedBatch = z.infer<typeof rejectedBatchSchema>;

export interface RejectedStore {
  /** Writes the batch (as one object or several parts); answers the first object's key. */
  put(batch: Omit<RejectedBatch, "v" | "rejectedAt" | "stage">): Promise<string>;
}

/** One item as JSON text, whatever its size or depth: cut into `received` past MAX_STORED_ITEM_CHARS. */
export function serializeItem(item: RejectedItemRecord): string {
  const whole = stringifyBounded(item, MAX_STORED_ITEM_CHARS + 1024);
  if (whole.complete) return whole.text;
  const { line, payload, ...rest } = item;
  const received = line !== undefined ? line.slice(0, MAX_STORED_ITEM_CHARS) : stringifyBounded(payload, MAX_STORED_ITEM_CHARS).text;
  return JSON.stringify({ ...rest, received, truncated: true });
}

/**
 * The batch as the texts of its objects, each at most `maxObjectBytes` of UTF-8: items in order,
 * as many per object as fit, each object a whole batch (the same header, `part` when more than one).
 */
export function serializeBatch(batch: RejectedBatch, maxObjectBytes = MAX_REJECTED_OBJECT_BYTES): string[] {
  const { items, ...header } = batch;
  const texts = items.map(serializeItem);
  // The header's size with the largest `part` it can get, so the part numbers never push an object over.
  const headerBytes = Buffer.byteLength(JSON.stringify({ ...header, part: { number: texts.length, of: texts.length }, items: [] }));
  const groups: string[][] = [];
  let current: string[] = [];
  let currentBytes = headerBytes;
  for (const text of texts) {
    const bytes = Buffer.byteLength(text) + 1;
    if (current.length > 0 && currentBytes + bytes > maxObjectBytes) {
      groups.push(current);
      current = [];
      currentBytes = headerBytes;
    }
    current.push(text);
    currentBytes += bytes;
  }
  if (current.length > 0) groups.push(current);
  return groups.map((group, position) => {
    const head = JSON.stringify(groups.length > 1 ? { ...header, part: { number: position + 1, of: groups.length } } : header);
    return `${head.slice(0, -1)},"items":[${group.join(",")}]}`;
  });
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
      const base = `${batch.stageOfFailure}-${newId()}`;
      const body: RejectedBatch = { v: 1, stage: options.stage, rejectedAt: at.toISOString(), ...batch };
      const objects = serializeBatch(body);
      const keys = objects.map((_, position) => rejectedKey(options.prefix, batch.source, at, batch.correlationId, objects.length > 1 ? `${base}-part-${position + 1}` : base));
      await Promise.all(
        objects.map(async (text, position) => {
          const key = keys[position] ?? "";
          try {
            await options.s3.putObject(options.bucket, key, text, "application/json");
          } catch (error) {
            // Nothing may be lost: if the store is down, the caller must not acknowledge.
            throw new RetryableError(`cannot write to the rejected store s3://${options.bucket}/${key}: ${String(error)}`);
          }
        }),
      );
      return keys[0] ?? "";
    },
  };
}
