import { ValidationError } from "../util/errors.js";
import { parseJsonOrThrow } from "../util/json.js";
import * as z from "../util/zod.js";

/**
 * What sits on the events queue: records already mapped to Mixpanel's shape,
 * each serialized once as a JSON line, with `$insert_id` and `time` fixed at the
 * edge so no retry, split or redelivery can change them (docs/vendors/mixpanel-api.md §5).
 * Versioned so a queue can drain across a deploy that changes the envelope.
 */
export const recordKindSchema = z.enum(["event", "profile", "group"]);
export type RecordKind = z.infer<typeof recordKindSchema>;

export const envelopeSchema = z.object({
  v: z.literal(1),
  kind: recordKindSchema,
  /** Which intake route or reader produced the records (native, braze, adobe, …). */
  source: z.string().check(z.minLength(1)),
  /** Follows the records from intake to Mixpanel in every log line. */
  correlationId: z.string().check(z.minLength(1)),
  /** One serialized Mixpanel record per entry (an /import event, /engage or /groups update). */
  records: z.array(z.string().check(z.minLength(2))).check(z.minLength(1)),
  /**
   * How many times the forwarder re-queued the records of this envelope that were left
   * unsent after the rest went through (absent = never). Bounds those retries, since a
   * re-queued message starts a fresh SQS receive count.
   */
  attempt: z.optional(z.number().check(z.int(), z.nonnegative())),
});

export type Envelope = z.infer<typeof envelopeSchema>;

/**
 * Characters written as JSON `\uXXXX` escapes in every queue body:
 * - U+FFFE and U+FFFF, outside the character set SQS accepts;
 * - every UTF-16 surrogate, i.e. each half of a character outside the Basic Multilingual
 *   Plane (emoji such as 🛒 become `\ud83d\uded2`). AWS SQS accepts #x10000–#x10FFFF, but
 *   other SQS implementations (fauxqs, which the local stack and tests run) refuse them, and
 *   one such character would fail the whole batch.
 * JSON.stringify leaves these raw. They can only occur inside JSON string literals (lone
 * surrogates are already escaped by JSON.stringify), where the escape means the same code
 * unit, so the escaped body is valid JSON that parses to identical content.
 */
const NEEDS_ESCAPE_IN_QUEUE = /[\uD800-\uDFFF\uFFFE\uFFFF]/g;

export function escapeForSqs(json: string): string {
  return json.replace(NEEDS_ESCAPE_IN_QUEUE, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

export function serializeEnvelope(envelope: Envelope): string {
  return escapeForSqs(JSON.stringify(envelope));
}

export function parseEnvelope(body: string): Envelope {
  return z.parseOrThrow(envelopeSchema, queueMessageJson(body));
}

/** The JSON value of a queue message's body; a body that is not JSON is bad input for good (ValidationError). */
export function queueMessageJson(body: string): unknown {
  return parseJsonOrThrow(body, (reason) => new ValidationError(`queue message is not JSON: ${reason}`));
}

/** Byte length of an envelope once serialized, without building it: used to pack messages. */
export function envelopeOverheadBytes(kind: RecordKind, source: string, correlationId: string): number {
  return Buffer.byteLength(serializeEnvelope({ v: 1, kind, source, correlationId, records: ["{}"] })) - 4;
}

/** A record line inside an envelope costs its escaped JSON-string encoding plus a comma. */
export function recordCostBytes(line: string): number {
  return Buffer.byteLength(escapeForSqs(JSON.stringify(line))) + 1;
}

/**
 * Packs serialized records into as few envelopes as fit under `maxMessageBytes`
 * each (the SQS message cap). A single record bigger than that cannot be queued
 * and is returned in `oversized` for the caller to reject.
 */
export function packEnvelopes(
  kind: RecordKind,
  source: string,
  correlationId: string,
  lines: readonly string[],
  maxMessageBytes: number,
): { bodies: string[]; oversizedIndexes: number[] } {
  const overhead = envelopeOverheadBytes(kind, source, correlationId);
  const bodies: string[] = [];
  const oversizedIndexes: number[] = [];
  let current: string[] = [];
  let currentBytes = overhead;
  const flush = () => {
    if (current.length === 0) return;
    bodies.push(serializeEnvelope({ v: 1, kind, source, correlationId, records: current }));
    current = [];
    currentBytes = overhead;
  };
  lines.forEach((line, index) => {
    const cost = recordCostBytes(line);
    if (overhead + cost > maxMessageBytes) {
      oversizedIndexes.push(index);
      return;
    }
    if (currentBytes + cost > maxMessageBytes) flush();
    current.push(line);
    currentBytes += cost;
  });
  flush();
  return { bodies, oversizedIndexes };
}
