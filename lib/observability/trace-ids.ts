import { hash } from "node:crypto";
import { groupByCaps } from "../util/batching.js";
import { logger } from "./telemetry.js";

/**
 * What the logs hold so `npm run trace -- --insert-id X` can find a record's lines
 * without holding the id itself: the first 16 hex characters (64 bits) of SHA-256
 * over the insert id. Short enough to log thousands per line, and far from any
 * collision at a project's event volumes. Distinct ids and other properties are
 * never logged.
 *
 * Where they are logged: the enqueue step logs the hash of every event it queues,
 * beside the request's correlation id ("queued records"); the forwarder logs the
 * hashes of the events Mixpanel refused or that wait for a retry ("forwarded
 * records"), and the correlation ids of every batch. An event found queued whose
 * correlation id's batches list no refusal or retry for it was imported. Hashing at
 * the edge costs one SHA-256 per event where the id is at hand; the forwarder would
 * have to decompress and parse every line it sends as built to find it.
 */
export const INSERT_ID_HASH_LENGTH = 16;

export function insertIdHash(insertId: string): string {
  return hash("sha256", insertId, "hex").slice(0, INSERT_ID_HASH_LENGTH);
}

/** CloudWatch Logs caps an event at 256 KiB; at most this many bytes of hashes go in one log line. */
export const HASH_BYTES_PER_LOG_LINE = 64_000;

/** Logs `hashes` under `message`, as many lines as CloudWatch's event size needs, each with `fields`. */
export function logInsertIdHashes(message: string, fields: Record<string, unknown>, hashes: readonly string[]): void {
  for (const part of groupByCaps(hashes, (h) => h.length + 3, Number.POSITIVE_INFINITY, HASH_BYTES_PER_LOG_LINE)) {
    logger.info(message, { ...fields, insertIdHashes: part });
  }
}
