import { crc32, gunzipSync, gzipSync, constants as zlibConstants } from "node:zlib";
import * as z from "../util/zod.js";
import { groupByCaps } from "../util/batching.js";
import { type Envelope, type RecordKind, envelopeSchema, queueMessageJson, recordKindSchema } from "./envelope.js";

/**
 * Envelope v2: the records of a message travel as one gzip-compressed NDJSON body
 * (one serialized record per line, each line ending in "\n"), base64-encoded.
 *
 * Why: compressed, a 256 KiB message carries a whole 2000-event /import
 * request instead of ~430 events, so an invocation moves ~5× more events, SQS bills
 * fewer 64 KiB units, and the forwarder sends the body as it is (`Content-Encoding:
 * gzip`, docs/vendors/mixpanel-api.md §3) instead of joining and compressing it again.
 * base64 keeps the SQS body pure ASCII, so no record character can fall outside SQS's
 * allowed set (U+FFFE/U+FFFF, or characters outside the BMP that fauxqs refuses).
 *
 * The records themselves are the same lines as in v1 (`$insert_id` and `time` fixed at
 * the edge): only their packing changes. The forwarder reads v1 and v2, so a queue
 * drains across the deploy.
 */
export const envelopeV2Schema = z.object({
  v: z.literal(2),
  kind: recordKindSchema,
  source: z.string().check(z.minLength(1)),
  correlationId: z.string().check(z.minLength(1)),
  /** Records in the body. */
  count: z.number().check(z.int(), z.positive()),
  /** Uncompressed bytes of the NDJSON body (the quantity Mixpanel's byte cap counts, §3). */
  bytes: z.number().check(z.int(), z.positive()),
  /** base64 of gzip(NDJSON). */
  gzip: z.string().check(z.minLength(1)),
  /** Re-queues of unsent records so far, as in v1. */
  attempt: z.optional(z.number().check(z.int(), z.nonnegative())),
});

export type EnvelopeV2 = z.infer<typeof envelopeV2Schema>;

/** /import and /engage take at most 2000 records per request (§3, §6): one message is one request. */
export const MAX_RECORDS_PER_MESSAGE = 2000;
/**
 * Uncompressed bytes per message. Mixpanel documents 10 MB per /import request, older pages
 * 2 MB (§3); staying under the lower figure means a message is always sendable as is.
 */
export const MAX_RAW_BYTES_PER_MESSAGE = 2_000_000;
/**
 * gzip level 1: measured here (npm run bench) it compresses these NDJSON bodies ~7×, and
 * higher levels cost 2–3× the intake CPU for a few percent fewer bytes.
 */
const GZIP_LEVEL = zlibConstants.Z_BEST_SPEED;

/**
 * Below this many bytes a body is stored in gzip's uncompressed ("stored") blocks: setting up
 * a deflate stream costs ~12 µs a call here, which for one-event Adobe calls was more than the
 * rest of the intake's work, and a few hundred bytes save nothing on SQS's 64 KiB billing unit.
 */
const STORED_BELOW_BYTES = 4096;
const STORED_BLOCK_MAX = 65_535;

/** A valid gzip stream (RFC 1952) of `data` in stored deflate blocks (RFC 1951 §3.2.4). */
function storedGzip(data: Buffer): Buffer<ArrayBuffer> {
  const parts: Buffer[] = [Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff])];
  let offset = 0;
  do {
    const length = Math.min(STORED_BLOCK_MAX, data.length - offset);
    const final = offset + length >= data.length ? 1 : 0;
    const header = Buffer.alloc(5);
    header[0] = final;
    header.writeUInt16LE(length, 1);
    header.writeUInt16LE(~length & 0xffff, 3);
    parts.push(header, data.subarray(offset, offset + length));
    offset += length;
  } while (offset < data.length);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32(data), 0);
  trailer.writeUInt32LE(data.length % 2 ** 32, 4);
  parts.push(trailer);
  return Buffer.concat(parts);
}

export function gzipBody(text: string): Buffer<ArrayBuffer> {
  if (text.length < STORED_BELOW_BYTES / 3) return storedGzip(Buffer.from(text, "utf8"));
  return gzipSync(text, { level: GZIP_LEVEL });
}

/** Any character outside printable ASCII in the header becomes a JSON \uXXXX escape. */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** Serializes a v2 envelope (pure ASCII). */
export function serializeEnvelopeV2(envelope: EnvelopeV2): string {
  return asciiJson(envelope);
}

export interface PackOptions {
  /** The SQS message cap (the queue's MaximumMessageSize). */
  readonly maxMessageBytes: number;
  readonly maxRecords?: number;
  readonly maxRawBytes?: number;
  readonly attempt?: number;
}

interface Header {
  readonly kind: RecordKind;
  readonly source: string;
  readonly correlationId: string;
  readonly attempt?: number;
}

function serializeV2(header: Header, lines: readonly string[], rawBytes: number, gzipped: Buffer): string {
  const envelope: EnvelopeV2 = {
    v: 2,
    kind: header.kind,
    source: header.source,
    correlationId: header.correlationId,
    count: lines.length,
    bytes: rawBytes,
    gzip: gzipped.toString("base64"),
  };
  if (header.attempt !== undefined) envelope.attempt = header.attempt;
  return asciiJson(envelope);
}

/**
 * Packs serialized records into v2 messages: each at most `maxRecords` records and
 * `maxRawBytes` uncompressed, and its serialized body at most `maxMessageBytes`. A record
 * that alone exceeds a cap is returned in `oversizedIndexes` for the caller to reject.
 */
export function packEnvelopesV2(
  kind: RecordKind,
  source: string,
  correlationId: string,
  lines: readonly string[],
  options: PackOptions,
): { bodies: string[]; oversizedIndexes: number[] } {
  const maxRecords = options.maxRecords ?? MAX_RECORDS_PER_MESSAGE;
  const maxRaw = options.maxRawBytes ?? MAX_RAW_BYTES_PER_MESSAGE;
  // Built without object spread: for one-event requests (Adobe) spreading these small objects was a
  // visible part of the intake's CPU in profiles.
  const header: Header = options.attempt !== undefined ? { kind, source, correlationId, attempt: options.attempt } : { kind, source, correlationId };
  // Header and JSON punctuation around the base64 body; generous digits for count/bytes (JSON leaves out an undefined attempt).
  const overhead = asciiJson({ v: 2, kind, source, correlationId, count: 1e9, bytes: 1e12, gzip: "", attempt: options.attempt }).length;
  const maxBase64 = options.maxMessageBytes - overhead;
  const bodies: string[] = [];
  const oversizedIndexes: number[] = [];

  // Groups under the record and raw-byte caps (one byte per newline); compression decides the rest below.
  // Each line's UTF-8 size is counted once, and a body's size is their sum (not a count of the joined text).
  const sizes = new Array<number>(lines.length);
  const fitting: number[] = [];
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index] ?? "";
    if (line.includes("\n")) throw new Error("envelope v2: a serialized record contains a newline");
    const size = Buffer.byteLength(line) + 1;
    sizes[index] = size;
    if (size > maxRaw) oversizedIndexes.push(index);
    else fitting.push(index);
  }
  const rawBytes = (index: number): number => sizes[index] ?? 0;
  const groups = groupByCaps(fitting, rawBytes, maxRecords, maxRaw);

  const emit = (indexes: number[]): void => {
    const group = indexes.map((index) => lines[index] ?? "");
    const text = `${group.join("\n")}\n`;
    const gzipped = gzipBody(text);
    const base64Length = Math.ceil(gzipped.length / 3) * 4;
    if (base64Length <= maxBase64) {
      bodies.push(serializeV2(header, group, indexes.reduce((sum, index) => sum + rawBytes(index), 0), gzipped));
      return;
    }
    if (indexes.length === 1) {
      // Does not fit one message even compressed: cannot be queued.
      oversizedIndexes.push(indexes[0] ?? -1);
      return;
    }
    // Cut where the measured ratio says the first part fits, with a 5% margin.
    const fits = Math.floor(indexes.length * (maxBase64 / base64Length) * 0.95);
    const cut = Math.max(1, Math.min(indexes.length - 1, fits));
    emit(indexes.slice(0, cut));
    emit(indexes.slice(cut));
  };
  for (const group of groups) emit(group);
  oversizedIndexes.sort((a, b) => a - b);
  return { bodies, oversizedIndexes };
}

/**
 * A message read from the events queue, whatever its envelope version. `lines()` decodes
 * on first use only: a v2 message that Mixpanel takes whole is never decompressed.
 */
export interface QueuedRecords {
  readonly version: 1 | 2;
  readonly kind: RecordKind;
  readonly source: string;
  readonly correlationId: string;
  readonly attempt?: number;
  readonly count: number;
  lines(): readonly string[];
  /** v2 only: the body as /import takes it (gzip of NDJSON) and its uncompressed size. */
  readonly gzipped?: { readonly body: Buffer<ArrayBuffer>; readonly rawBytes: number };
}

const GZIP_MAGIC_0 = 0x1f;
const GZIP_MAGIC_1 = 0x8b;

/** The header fields both envelope versions carry, as QueuedRecords names them. */
function headerOf(envelope: { kind: RecordKind; source: string; correlationId: string; attempt?: number | undefined }) {
  return {
    kind: envelope.kind,
    source: envelope.source,
    correlationId: envelope.correlationId,
    ...(envelope.attempt !== undefined ? { attempt: envelope.attempt } : {}),
  };
}

function fromV1(envelope: Envelope): QueuedRecords {
  return {
    version: 1,
    ...headerOf(envelope),
    count: envelope.records.length,
    lines: () => envelope.records,
  };
}

/** Reads a v1 or v2 queue message; throws (ValidationError, zod or Error) on anything else. */
export function parseQueuedRecords(body: string): QueuedRecords {
  // Parsed once: a v1 body is checked from the same value, not read again.
  const parsed = queueMessageJson(body);
  const version = parsed !== null && typeof parsed === "object" && "v" in parsed ? parsed.v : undefined;
  if (version !== 2) return fromV1(z.parseOrThrow(envelopeSchema, parsed));
  const envelope = z.parseOrThrow(envelopeV2Schema, parsed);
  const gzipped = Buffer.from(envelope.gzip, "base64");
  // A cheap integrity check before the body is sent as is: gzip magic, and the trailer's
  // ISIZE (uncompressed length mod 2^32, RFC 1952 §2.3.1) against the header's byte count.
  if (
    gzipped.length < 18 ||
    gzipped[0] !== GZIP_MAGIC_0 ||
    gzipped[1] !== GZIP_MAGIC_1 ||
    gzipped.readUInt32LE(gzipped.length - 4) !== envelope.bytes % 2 ** 32
  ) {
    throw new Error("envelope v2: body is not the gzip stream its header describes");
  }
  let decoded: string[] | undefined;
  return {
    version: 2,
    ...headerOf(envelope),
    count: envelope.count,
    gzipped: { body: gzipped, rawBytes: envelope.bytes },
    lines() {
      if (!decoded) {
        const text = gunzipSync(gzipped).toString("utf8");
        const lines = text.endsWith("\n") ? text.slice(0, -1).split("\n") : text.split("\n");
        if (lines.length !== envelope.count) {
          throw new Error(`envelope v2: header says ${envelope.count} records, body has ${lines.length}`);
        }
        decoded = lines;
      }
      return decoded;
    },
  };
}
