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
 * Format: `{"v":1,"digests":[…],"expires":{"<digest>":<ms since epoch>},"hints":{"<digest>":<int32>}}`.
 * A digest without an `expires` entry is suppressed forever. `hints` holds each id's idHint, so
 * the edges can pass over an id whose hint is not listed without computing its SHA-256; a list
 * where some active digest has no hint (written before hints) is checked by digest alone. Both
 * are additions readers that predate them ignore, so they keep suppressing those ids forever and
 * by digest: the safe direction.
 */
/** An erased id as the list keeps it: SHA-256, hex, so the list never holds the id itself. */
export function idDigest(id: string): string {
  // The one-shot form: about a quarter of createHash's cost, which the intake pays per distinct id.
  return hash("sha256", id, "hex");
}

/**
 * A 32-bit FNV-1a of the id's UTF-16 code units, as a signed integer (so V8 keeps it unboxed and a
 * set of them hashes it directly): a prefilter, not a proof. An id whose hint is not on the list is
 * not erased; one whose hint is, is checked by digest. It tells less about the id than the digest
 * beside it (4 billion values, many ids each), and costs a few nanoseconds where SHA-256 costs a
 * few hundred, paid at intake for every id not seen before.
 */
export function idHint(id: string): number {
  let hint = 0x811c9dc5 | 0;
  for (let i = 0; i < id.length; i++) {
    hint ^= id.charCodeAt(i);
    hint = Math.imul(hint, 0x01000193);
  }
  return hint;
}

/**
 * The digests suppressed now, with the hints of them all when the list has one for each
 * (undefined otherwise: then every id is checked by digest).
 */
export class SuppressedDigests extends Set<string> {
  readonly hints: ReadonlySet<number> | undefined;
  constructor(digests: Iterable<string>, hints: ReadonlySet<number> | undefined) {
    super(digests);
    this.hints = hints;
  }
}

export const SUPPRESSION_KEY = "gdpr/suppressed-ids.json";

const suppressionSchema = z.object({
  v: z.literal(1),
  digests: z.array(z.string()),
  expires: z.optional(z.record(z.string(), z.number())),
  hints: z.optional(z.record(z.string(), z.number())),
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
export function activeDigests(file: Pick<SuppressionFile, "digests" | "expires" | "hints">, nowMs: number): SuppressedDigests {
  const active: string[] = [];
  const hints = new Set<number>();
  let everyHint = true;
  for (const digest of file.digests) {
    const until = file.expires?.[digest];
    if (until !== undefined && until <= nowMs) continue;
    active.push(digest);
    const hint = file.hints?.[digest];
    if (hint === undefined) everyHint = false;
    else hints.add(hint);
  }
  return new SuppressedDigests(active, everyHint ? hints : undefined);
}

/**
 * The digests suppressed now. Read through `cachedSuppression`, an expiry takes effect within
 * one cache lifetime.
 */
export async function readSuppressedDigests(s3: Pick<S3Api, "getObject">, bucket: string, nowMs: number = Date.now()): Promise<SuppressedDigests> {
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
export function withSuppressedIds(file: Pick<SuppressionFile, "digests" | "expires" | "hints">, ids: readonly string[], options: SuppressionOptions = {}): SuppressionFile {
  const listed = new Set(file.digests);
  const expires = new Map(Object.entries(file.expires ?? {}));
  const hints = new Map(Object.entries(file.hints ?? {}));
  for (const id of ids) {
    const digest = idDigest(id);
    const wasListed = listed.has(digest);
    listed.add(digest);
    hints.set(digest, idHint(id));
    const previous = expires.get(digest);
    if (options.expiresAtMs === undefined || (wasListed && previous === undefined)) expires.delete(digest);
    else expires.set(digest, Math.max(previous ?? Number.NEGATIVE_INFINITY, options.expiresAtMs));
  }
  const digests = [...listed].sort();
  const entries = (values: Map<string, number>) => Object.fromEntries(digests.filter((digest) => values.has(digest)).map((digest) => [digest, values.get(digest) ?? 0]));
  return {
    v: 1,
    digests,
    ...(expires.size > 0 ? { expires: entries(expires) } : {}),
    hints: entries(hints),
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
export function cachedSuppression(load: () => Promise<SuppressedDigests>, ttlMs: number, now: () => number): () => Promise<ReadonlySet<string>> {
  let cached: { at: number; digests: SuppressedDigests } | undefined;
  return async () => {
    if (cached && now() - cached.at < ttlMs) return cached.digests;
    cached = { at: now(), digests: await load() };
    return cached.digests;
  };
}
