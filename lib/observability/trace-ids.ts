import { hash } from "node:crypto";
import { groupByCaps } from "../util/batching.js";
import { logger } from "./telemetry.js";

/**
 * What the logs hold so `npm run trace -- --insert-id X` can find a record's lines
 * without holding the id itself: the first 8 base64url characters (48 bits) of SHA-256
 * over the insert id. Trace looks one id up, so what matters is the chance that another
 * event of the searched window shares its hash: 2^-48 per event, about 4 in a million
 * for a billion events. Distinct ids and other properties are never logged.
 *
 * Where they are logged: the edges (intake, Currents reader) put the hashes of the events
 * they queued on the line they already write per request or object, beside its correlation
 * id; the forwarder logs the hashes of the events Mixpanel refused or that wait for a retry
 * ("forwarded records"), and the correlation ids of every batch. An event found queued
 * whose correlation id's batches list no refusal or retry for it was imported. Hashing
 * at the edge costs one SHA-256 per event where the id is at hand (the forwarder would have
 * to decompress and parse every line it sends as built), and riding on a line that is
 * written anyway adds ~11 bytes per event rather than a log call per request.
 */
export const INSERT_ID_HASH_LENGTH = 8;

export function insertIdHash(insertId: string): string {
  return hash("sha256", insertId, "base64url").slice(0, INSERT_ID_HASH_LENGTH);
}

/** CloudWatch Logs caps an event at 256 KiB; at most this many bytes of hashes go in one log line. */
export const HASH_BYTES_PER_LOG_LINE = 64_000;

/**
 * Logs `message` with `fields` and the first part of `hashes`; parts past one line's share go on
 * `<message> (insert ids continued)` lines, so counts in `fields` are logged once. With no hashes,
 * logs the line only when `evenWithout` (the edges' per-request line), not at all otherwise.
 */
export function logInsertIdHashes(
  message: string,
  fields: Record<string, unknown>,
  hashes: readonly string[],
  options: { readonly evenWithout?: boolean } = {},
): void {
  const [first, ...rest] = groupByCaps(hashes, (h) => h.length + 3, Number.POSITIVE_INFINITY, HASH_BYTES_PER_LOG_LINE);
  if (!first && !options.evenWithout) return;
  logger.info(message, { ...fields, insertIdHashes: first ?? [] });
  for (const part of rest) logger.info(`${message} (insert ids continued)`, { insertIdHashes: part });
}
