import { isMissingObject } from "../aws/aws-call.js";
import type { S3Api } from "../aws/s3.js";
import * as z from "../util/zod.js";
import { RetryableError, describeError } from "../util/errors.js";
import { parseJsonWith } from "../util/json.js";
import { hash } from "node:crypto";

/**
 * The erased-ids list: SHA-256 digests of every id `npm run gdpr:delete` erased, in the snapshot
 * bucket at `gdpr/suppressed-ids.json`. Mixpanel's deletion does not stop future collection and
 * deleting a Brevo contact does not stop the relay from creating it again
 * (docs/vendors/mixpanel-api.md "GDPR deletion", docs/vendors/brevo-connector.md §2), so the
 * edges drop records of these ids at intake (`erased`, lib/enqueue/erased.ts), the Brevo
 * forwarder skips them (`suppressed`), and gdpr:delete writes the list before it deletes anything.
 *
 * Format: `{"v":1,"digests":[…],"expires":{"<digest>":<ms since epoch>}}`. A digest without an
 * `expires` entry is suppressed forever. `expires` is an addition readers that predate it ignore,
 * so they keep suppressing those ids forever: the safe direction.
 */
/** An erased id as the list keeps it: SHA-256, hex, so the list never holds the id itself. */
export function idDigest(id: string): string {
  // The one-shot form: about a quarter of createHash's cost, which the intake pays per distinct id.
  return hash("sha256", id, "hex");
}

export const SUPPRESSION_KEY = "gdpr/suppressed-ids.json";

const suppressionSchema = z.object({
  v: z.literal(1),
  digests: z.array(z.string()),
  expires: z.optional(z.record(z.string(), z.number())),
});
type SuppressionFile = z.infer<typeof suppressionSchema>;

async function readSuppressionFile(s3: Pick<S3Api, "getObject">, bucket: string): Promise<SuppressionFile> {
  let text: string;
  try {
    text = new TextDecoder().decode(await s3.getObject(bucket, SUPPRESSION_KEY));
  } catch (error) {
    if (isMissingObject(error)) return { v: 1, digests: [] };
    // Fail closed: without the list nothing may be accepted or sent for anyone.
    throw new RetryableError(`cannot read the erased-ids list s3://${bucket}/${SUPPRESSION_KEY}: ${describeError(error)}`);
  }
  const parsed = parseJsonWith(suppressionSchema, text);
  if (!parsed.success) throw new RetryableError(`s3://${bucket}/${SUPPRESSION_KEY} is not an erased-ids list`);
  return parsed.data;
}

/** The digests still suppressed at `nowMs` (those without an expiry, or whose expiry is later). */
export function activeDigests(file: Pick<SuppressionFile, "digests" | "expires">, nowMs: number): Set<string> {
  const active = new Set<string>();
  for (const digest of file.digests) {
    const until = file.expires?.[digest];
    if (until === undefined || until > nowMs) active.add(digest);
  }
  return active;
}

/**
 * The digests suppressed now. Read through `cachedSuppression`, an expiry takes effect within
 * one cache lifetime.
 */
export async function readSuppressedDigests(s3: Pick<S3Api, "getObject">, bucket: string, nowMs: number = Date.now()): Promise<Set<string>> {
  return activeDigests(await readSuppressionFile(s3, bucket), nowMs);
}

export interface SuppressionOptions {
  /** When the suppression ends (ms since epoch); absent = forever. */
  readonly expiresAtMs?: number | undefined;
}

/**
 * The list with `ids` added. An id already listed keeps the longer of its two suppressions (forever
 * wins), so a shorter `--suppress-days` never shortens an earlier erasure.
 */
export function withSuppressedIds(file: Pick<SuppressionFile, "digests" | "expires">, ids: readonly string[], options: SuppressionOptions = {}): SuppressionFile {
  const listed = new Set(file.digests);
  const expires = new Map(Object.entries(file.expires ?? {}));
  for (const id of ids) {
    const digest = idDigest(id);
    const wasListed = listed.has(digest);
    listed.add(digest);
    const previous = expires.get(digest);
    if (options.expiresAtMs === undefined || (wasListed && previous === undefined)) expires.delete(digest);
    else expires.set(digest, Math.max(previous ?? Number.NEGATIVE_INFINITY, options.expiresAtMs));
  }
  const digests = [...listed].sort();
  return {
    v: 1,
    digests,
    ...(expires.size > 0 ? { expires: Object.fromEntries(digests.filter((digest) => expires.has(digest)).map((digest) => [digest, expires.get(digest) ?? 0])) } : {}),
  };
}

/** Adds ids (as digests) to the list; run before any deletion is filed. Returns how many digests it lists. */
export async function addSuppressedIds(
  s3: Pick<S3Api, "getObject" | "putObject">,
  bucket: string,
  ids: readonly string[],
  options: SuppressionOptions = {},
): Promise<number> {
  const next = withSuppressedIds(await readSuppressionFile(s3, bucket), ids, options);
  await s3.putObject(bucket, SUPPRESSION_KEY, JSON.stringify(next), "application/json");
  return next.digests.length;
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
