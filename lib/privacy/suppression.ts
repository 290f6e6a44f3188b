import { AwsCallError } from "../aws/aws-call.js";
import type { S3Api } from "../aws/s3.js";
import * as z from "../util/zod.js";
import { RetryableError, describeError } from "../errors.js";
import { parseJsonWith } from "../util/json.js";
import { createHash } from "node:crypto";

/**
 * The erased-ids list: SHA-256 digests of every id `npm run gdpr:delete` erased, in the snapshot
 * bucket at `gdpr/suppressed-ids.json`. Deleting a Brevo contact does not stop the relay from
 * creating it again (docs/vendors/brevo-connector.md §2), so the Brevo forwarder skips records
 * for these ids (`suppressed`), and gdpr:delete writes the list before it deletes anything.
 */
/** An erased id as the list keeps it: SHA-256, hex, so the list never holds the id itself. */
export function idDigest(id: string): string {
  return createHash("sha256").update(id).digest("hex");
}

export const SUPPRESSION_KEY = "gdpr/suppressed-ids.json";

const suppressionSchema = z.object({ v: z.literal(1), digests: z.array(z.string()) });

function isMissing(error: unknown): boolean {
  return error instanceof AwsCallError && (error.code === "NoSuchKey" || error.status === 404);
}

export async function readSuppressedDigests(s3: Pick<S3Api, "getObject">, bucket: string): Promise<Set<string>> {
  let text: string;
  try {
    text = new TextDecoder().decode(await s3.getObject(bucket, SUPPRESSION_KEY));
  } catch (error) {
    if (isMissing(error)) return new Set();
    // Fail closed: without the list nothing may be sent to Brevo.
    throw new RetryableError(`cannot read the erased-ids list s3://${bucket}/${SUPPRESSION_KEY}: ${describeError(error)}`);
  }
  const parsed = parseJsonWith(suppressionSchema, text);
  if (!parsed.success) throw new RetryableError(`s3://${bucket}/${SUPPRESSION_KEY} is not an erased-ids list`);
  return new Set(parsed.data.digests);
}

/** Adds ids (as digests) to the list; run before any deletion is filed. */
export async function addSuppressedIds(s3: Pick<S3Api, "getObject" | "putObject">, bucket: string, ids: readonly string[]): Promise<number> {
  const digests = await readSuppressedDigests(s3, bucket);
  for (const id of ids) digests.add(idDigest(id));
  await s3.putObject(bucket, SUPPRESSION_KEY, JSON.stringify({ v: 1, digests: [...digests].sort() }), "application/json");
  return digests.size;
}

/** The list, re-read at most every `ttlMs` per container (like secrets). */
export function cachedSuppression(load: () => Promise<Set<string>>, ttlMs: number, now: () => number): () => Promise<ReadonlySet<string>> {
  let cached: { at: number; digests: Set<string> } | undefined;
  return async () => {
    if (cached && now() - cached.at < ttlMs) return cached.digests;
    cached = { at: now(), digests: await load() };
    return cached.digests;
  };
}
