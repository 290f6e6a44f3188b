import { createHash } from "node:crypto";

/**
 * What the forwarder logs so `npm run trace -- --insert-id X` can find a record's
 * lines without the logs holding the id itself: the first 16 hex characters
 * (64 bits) of SHA-256 over the insert id. Short enough to log thousands per
 * line, and far from any collision at a project's event volumes. Distinct ids and
 * other properties are never logged.
 */
export const INSERT_ID_HASH_LENGTH = 16;

export function insertIdHash(insertId: string): string {
  return createHash("sha256").update(insertId, "utf8").digest("hex").slice(0, INSERT_ID_HASH_LENGTH);
}

/** CloudWatch Logs caps an event at 256 KiB; the forwarder logs at most this many bytes of hashes per line. */
export const HASH_BYTES_PER_LOG_LINE = 64_000;
