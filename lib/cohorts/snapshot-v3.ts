import { ValidationError } from "../util/errors.js";
import { parseJsonOrThrow, parseJsonOrUndefined } from "../util/json.js";
import * as z from "../util/zod.js";

/**
 * Snapshot v3: the member columns stored as columns, so a snapshot is read and
 * written without a JSON value per member (decoding and re-encoding v2's JSON lines,
 * and gzip of them, cost a third of the diff):
 *
 *     <header as one JSON line> \n
 *     <ids>         UTF-8, one entry per member joined by "\n"
 *     <identities>  UTF-8, one entry per member joined by "\n"
 *     <hashes>      8 bytes per member, the property hash as a little-endian float64
 *
 * An id entry is the id itself unless it starts with `"`, holds a newline or a
 * surrogate (nearly every distinct id is stored as it is); those are stored as JSON
 * strings, so a newline or a lone surrogate survives: an entry starting with `"` is
 * JSON. An identity is JSON text or "", which never holds a raw newline
 * (identity.ts identityOf writes it with JSON.stringify; v1/v2 snapshots are checked
 * when read, snapshot-v2.ts).
 * The header gives the byte length of each section, so a truncated object is
 * refused rather than read short.
 *
 * Not gzipped: a snapshot is about 60 bytes per member, S3 storage of 10 M members
 * is ~0.6 GB (cents per month), and gzip plus gunzip cost more CPU than the rest of
 * reading and writing it. Row order, hashes and identities mean what they mean in
 * v2 (snapshot-codec.ts); v1/v2 objects (gzip) are told apart by their first two bytes.
 */
export const SNAPSHOT_V3 = 3;

export const snapshotV3HeaderSchema = z.object({
  v: z.literal(3),
  sync_id: z.string(),
  cohort_id: z.number(),
  run_id: z.string(),
  created_at: z.string(),
  count: z.number().check(z.int(), z.minimum(0)),
  partition: z.optional(z.number().check(z.int(), z.minimum(0))),
  partitions: z.optional(z.number().check(z.int(), z.minimum(1))),
  prop_hash: z.enum(["sha1-48", "fnv-52"]),
  identity_keys: z.optional(z.array(z.string())),
  /** Byte lengths of the id and identity sections (the hashes are 8 × count). */
  ids_bytes: z.number().check(z.int(), z.minimum(0)),
  identities_bytes: z.number().check(z.int(), z.minimum(0)),
});
export type SnapshotV3Header = z.infer<typeof snapshotV3HeaderSchema>;

/** What the writer is given; the section lengths and the version are its own. */
export type SnapshotV3Fields = Omit<SnapshotV3Header, "v" | "ids_bytes" | "identities_bytes">;

/** Ids stored as JSON strings: a leading `"`, a newline, or a surrogate (UTF-8 cannot carry a lone one). */
const NEEDS_JSON = /^"|[\n\ud800-\udfff]/;

export function isGzip(bytes: Uint8Array): boolean {
  return bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** UTF-8 bytes of text; the one-byte copy when the text is ASCII (same bytes, a fraction of the CPU). */
export function utf8Bytes(text: string): Buffer {
  return Buffer.byteLength(text, "utf8") === text.length ? Buffer.from(text, "latin1") : Buffer.from(text, "utf8");
}

export interface SnapshotV3Columns {
  readonly ids: readonly string[];
  readonly hashes: ArrayLike<number>;
  readonly identities: readonly string[];
}

/**
 * The snapshot of `rows` of `columns` (in that order, which the caller keeps in
 * member-key order). `previous`: the snapshot the rows were diffed against and each
 * row's row in it (-1 = joined); a member still there takes its id from it, which
 * reads the ids in stored order instead of in the export's order (fewer cache misses
 * over a million strings).
 */
export function encodeSnapshotV3(
  fields: SnapshotV3Fields,
  columns: SnapshotV3Columns,
  rows: ArrayLike<number>,
  previous?: { readonly ids: readonly string[]; readonly previousRow: Int32Array; readonly plainIds?: boolean },
): Buffer {
  // A snapshot whose ids were all stored as they are (plainIds) needs no check of its ids again.
  const previousPlain = previous?.plainIds === true;
  const count = rows.length;
  const ids = new Array<string>(count);
  const identities = new Array<string>(count);
  const hashes = Buffer.allocUnsafe(count * 8);
  for (let i = 0; i < count; i++) {
    const row = rows[i] ?? 0;
    const j = previous ? (previous.previousRow[row] ?? -1) : -1;
    const id = (j >= 0 ? previous?.ids[j] : columns.ids[row]) ?? "";
    ids[i] = (j < 0 || !previousPlain) && NEEDS_JSON.test(id) ? JSON.stringify(id) : id;
    identities[i] = columns.identities[row] ?? "";
    hashes.writeDoubleLE(columns.hashes[row] ?? 0, i * 8);
  }
  const idBytes = utf8Bytes(ids.join("\n"));
  const identityBytes = utf8Bytes(identities.join("\n"));
  const header: SnapshotV3Header = { ...fields, v: SNAPSHOT_V3, count, ids_bytes: idBytes.length, identities_bytes: identityBytes.length };
  return Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), idBytes, identityBytes, hashes]);
}

export interface DecodedV3 {
  readonly header: SnapshotV3Header;
  readonly ids: string[];
  /** Every id was stored as it is (none as JSON): each can be written so again without a check. */
  readonly plainIds: boolean;
  readonly hashes: number[];
  readonly identities: string[];
}

function entries(bytes: Buffer, start: number, length: number, count: number, what: string): string[] {
  if (count === 0) {
    if (length !== 0) throw new ValidationError(`snapshot ${what} section is not empty for 0 members`);
    return [];
  }
  const list = bytes.toString("utf8", start, start + length).split("\n");
  if (list.length !== count) throw new ValidationError(`snapshot ${what} section has ${list.length} entries for ${count} members`);
  return list;
}

/** The columns of a v3 snapshot, in stored order. */
export function decodeSnapshotV3(data: Uint8Array): DecodedV3 {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const end = bytes.indexOf(10);
  if (end < 0) throw new ValidationError("snapshot header is not one line");
  const headerText = bytes.toString("utf8", 0, end);
  const parsed = snapshotV3HeaderSchema.safeParse(parseJsonOrThrow(headerText, () => new ValidationError("snapshot header is not JSON")));
  if (!parsed.success) throw new ValidationError("snapshot header has the wrong shape");
  const header = parsed.data;
  const { count } = header;
  const idsAt = end + 1;
  const identitiesAt = idsAt + header.ids_bytes;
  const hashesAt = identitiesAt + header.identities_bytes;
  if (bytes.length !== hashesAt + count * 8) throw new ValidationError(`snapshot is ${bytes.length} bytes, its header says ${hashesAt + count * 8}`);
  const ids = entries(bytes, idsAt, header.ids_bytes, count, "id");
  let plainIds = true;
  for (let i = 0; i < count; i++) {
    const entry = ids[i] ?? "";
    if (entry.charCodeAt(0) !== 34) continue;
    plainIds = false;
    // Not JSON reads as undefined, which is not a string either.
    const id = parseJsonOrUndefined(entry);
    if (typeof id !== "string") throw new ValidationError(`snapshot id ${i + 1} is not a JSON string`);
    ids[i] = id;
  }
  const identities = entries(bytes, identitiesAt, header.identities_bytes, count, "identity");
  const hashes = new Array<number>(count);
  for (let i = 0; i < count; i++) {
    const hash = bytes.readDoubleLE(hashesAt + i * 8);
    if (!Number.isSafeInteger(hash) || hash < 0) throw new ValidationError(`snapshot hash ${i + 1} is not a property hash`);
    hashes[i] = hash;
  }
  return { header, ids, plainIds, hashes, identities };
}
