import { hash } from "node:crypto";
import { Readable } from "node:stream";
import { constants, createGunzip, createGzip } from "node:zlib";
import * as z from "../util/zod.js";
import { ValidationError } from "../errors.js";
import { canonicalJson } from "../util/json.js";
import { type SnapshotV3Header, decodeSnapshotV3, encodeSnapshotV3, isGzip } from "./snapshot-v3.js";

/**
 * Member sets in compact, column form, and the diff between the last delivered
 * snapshot and this run's export (docs/vendors/cohort-sync.md §2).
 *
 * A snapshot holds per member `[id, hash, identity]`: `hash` is a property hash over
 * the exported properties (so a property change re-sends the member; PropHashAlgorithm);
 * `identity` holds only what a later removal needs (`$email`, Braze external id
 * property). This release writes v3, the three as columns (snapshot-v3.ts); v1 and v2
 * (gzipped JSON lines: a header line, then one `[id, hash, identity]` line per
 * member) are still read.
 *
 * Row order: v2 snapshots are sorted by **member key** = (FNV-1a 32 of the id,
 * then the id): sorting by a 32-bit number is a radix sort (linear) where
 * sorting 1 M id strings costs seconds, and the same number picks a member's
 * hash partition (partition.ts), so every partition of a snapshot is itself in
 * key order. v1 snapshots (id order) are still read and re-sorted on load.
 */

export interface MemberColumns {
  readonly ids: string[];
  /** 48-bit property hash per member. */
  readonly hashes: number[];
  /** JSON of the identity properties ("" = none). */
  readonly identities: string[];
  /**
   * Decoded snapshots only: each row's line as stored. An unchanged member's
   * line is written to the next snapshot as it is (encodeSnapshot `reuse`).
   */
  readonly lines?: string[];
  /** idHash of each id, where the reader had it: decoded snapshots (while checking the order), staged rows (read from their bytes). */
  readonly keyHashes?: number[];
  /** Decoded v3 snapshots only: every id was stored as it is (snapshot-v3.ts), so it can be written again unchecked. */
  readonly plainIds?: boolean;
  /** Decoded snapshots only: the property hash its rows were written with. */
  readonly propHash?: PropHashAlgorithm;
  /**
   * Decoded snapshots only: the identity properties its identities were picked with
   * (JSON of the list), when the header records them. With the same list, a member
   * whose property hash is unchanged has the same identity, so the diff keeps it
   * instead of parsing the member's properties again.
   */
  readonly identityKeys?: string;
}

/**
 * How `hash` was computed. "fnv-52": two 32-bit FNV-1a lanes over the canonical
 * JSON, 52 bits (≈ 0.1 µs per member); "sha1-48" (the first release, ≈ 2 µs):
 * absent in older headers. A diff compares hashes of one algorithm only, so a
 * diff run keeps its snapshot's algorithm and a full run (which re-sends
 * everyone anyway) moves the snapshot to fnv-52.
 */
export type PropHashAlgorithm = "sha1-48" | "fnv-52";
export const PROP_HASH_DEFAULT: PropHashAlgorithm = "fnv-52";

export const SNAPSHOT_VERSION = 2;

export const snapshotHeaderSchema = z.object({
  v: z.union([z.literal(1), z.literal(2)]),
  sync_id: z.string(),
  cohort_id: z.number(),
  run_id: z.string(),
  created_at: z.string(),
  count: z.number().check(z.int(), z.gte(0)),
  /** Partitioned snapshots (partition.ts): this object holds partition `partition` of `partitions`. */
  partition: z.optional(z.number().check(z.int(), z.gte(0))),
  partitions: z.optional(z.number().check(z.int(), z.gte(1))),
  prop_hash: z.optional(z.enum(["sha1-48", "fnv-52"])),
  /** The identity properties the identities were picked with (absent before they were recorded). */
  identity_keys: z.optional(z.array(z.string())),
});
export type SnapshotHeader = z.infer<typeof snapshotHeaderSchema>;


/** The property hash of a member under `algorithm` (see PropHashAlgorithm). */
export function propertyHash(properties: Record<string, unknown>, algorithm: PropHashAlgorithm = PROP_HASH_DEFAULT): number {
  return propertyHashOfText(canonicalJson(properties), algorithm);
}

/** The property hash of properties given as their canonical JSON text (staged-rows.ts stores that text). */
export function propertyHashOfText(text: string, algorithm: PropHashAlgorithm): number {
  if (algorithm === "sha1-48") return hash("sha1", text, "buffer").readUIntBE(0, 6);
  return propertyHashOfPieces([text], text.length);
}

/**
 * propertyHashOfText(pieces.join(""), "fnv-52") without joining them first: staging
 * hashes the canonical text from its parts, each a flat string, where hashing the
 * joined text would first flatten it (issue 12 profile). `length` is the joined length.
 */
export function propertyHashOfPieces(pieces: readonly string[], length: number): number {
  // Four code units per turn (the same values as one at a time): the loop overhead, not the
  // multiplications, was most of the ~1 µs per member this cost at staging (issue 12 profile).
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ length;
  for (const piece of pieces) {
    const n = piece.length;
    let i = 0;
    for (; i + 3 < n; i += 4) {
      const c0 = piece.charCodeAt(i);
      const c1 = piece.charCodeAt(i + 1);
      const c2 = piece.charCodeAt(i + 2);
      const c3 = piece.charCodeAt(i + 3);
      a = Math.imul(Math.imul(Math.imul(Math.imul(a ^ c0, 0x01000193) ^ c1, 0x01000193) ^ c2, 0x01000193) ^ c3, 0x01000193);
      b = Math.imul(Math.imul(Math.imul(Math.imul(b ^ c0, 0x5bd1e995) ^ c1, 0x5bd1e995) ^ c2, 0x5bd1e995) ^ c3, 0x5bd1e995);
    }
    for (; i < n; i++) {
      const c = piece.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
    }
  }
  b ^= b >>> 15;
  return (a >>> 0) * 1_048_576 + ((b >>> 0) >>> 12);
}

/** FNV-1a over the UTF-16 code units of the id: the sort key and the partition of a member. */
export function idHash(id: string): number {
  const n = id.length;
  let h = 0x811c9dc5;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
    h = Math.imul(h ^ id.charCodeAt(i + 1), 0x01000193);
    h = Math.imul(h ^ id.charCodeAt(i + 2), 0x01000193);
    h = Math.imul(h ^ id.charCodeAt(i + 3), 0x01000193);
  }
  for (; i < n; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** propertyHashOfPieces over the first n bytes of ASCII text (each byte is the UTF-16 code unit it stands for): staging hashes the bytes it writes. */
export function propertyHashOfAsciiBytes(bytes: Uint8Array, n: number): number {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ n;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    const c0 = bytes[i] ?? 0;
    const c1 = bytes[i + 1] ?? 0;
    const c2 = bytes[i + 2] ?? 0;
    const c3 = bytes[i + 3] ?? 0;
    a = Math.imul(Math.imul(Math.imul(Math.imul(a ^ c0, 0x01000193) ^ c1, 0x01000193) ^ c2, 0x01000193) ^ c3, 0x01000193);
    b = Math.imul(Math.imul(Math.imul(Math.imul(b ^ c0, 0x5bd1e995) ^ c1, 0x5bd1e995) ^ c2, 0x5bd1e995) ^ c3, 0x5bd1e995);
  }
  for (; i < n; i++) {
    const c = bytes[i] ?? 0;
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  b ^= b >>> 15;
  return (a >>> 0) * 1_048_576 + ((b >>> 0) >>> 12);
}

/**
 * idHash of the id stored in bytes[from, to) when it is ASCII without escapes: its bytes
 * are then its UTF-16 code units (nearly every id). -1 for any other id, to be decoded.
 */
export function idHashOfAsciiBytes(bytes: Uint8Array, from: number, to: number): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) {
    const c = bytes[i] ?? 0;
    if (c >= 0x80 || c === 92) return -1;
    h = Math.imul(h ^ c, 0x01000193);
  }
  return h >>> 0;
}

/** Member key order: (idHash, id). */
export function compareKeys(hashA: number, idA: string, hashB: number, idB: string): number {
  if (hashA !== hashB) return hashA < hashB ? -1 : 1;
  return idA < idB ? -1 : idA > idB ? 1 : 0;
}

export function identityOf(properties: Record<string, unknown>, identityKeys: readonly string[]): string {
  const picked: Record<string, unknown> = {};
  let any = false;
  for (const key of identityKeys) {
    const value = properties[key];
    if (value !== undefined && value !== null && value !== "") {
      picked[key] = value;
      any = true;
    }
  }
  return any ? JSON.stringify(picked) : "";
}

export function emptyColumns(): MemberColumns {
  return { ids: [], hashes: [], identities: [] };
}

export function idHashes(ids: readonly string[]): Uint32Array {
  const out = new Uint32Array(ids.length);
  for (let i = 0; i < ids.length; i++) out[i] = idHash(ids[i] ?? "");
  return out;
}

/**
 * Row order sorted by member key; for duplicate ids the first row wins (later
 * ones are dropped). LSD radix sort on the 32-bit id hash (two 16-bit passes,
 * stable), then runs of equal hashes (collisions, duplicates) sorted by id.
 */
export function sortedUniqueRows(columns: MemberColumns, keyHashes: Uint32Array = idHashes(columns.ids)): Uint32Array {
  const n = columns.ids.length;
  const order = rowsInHashOrder(keyHashes, n);
  const ids = columns.ids;
  let out = 0;
  for (let i = 0; i < n; ) {
    const h = keyHashes[order[i] ?? 0];
    let end = i + 1;
    while (end < n && keyHashes[order[end] ?? 0] === h) end++;
    if (end - i > 1) {
      const run = order.subarray(i, end);
      run.sort((a, b) => {
        const x = ids[a] ?? "";
        const y = ids[b] ?? "";
        return x < y ? -1 : x > y ? 1 : a - b;
      });
    }
    let previous: string | undefined;
    for (let k = i; k < end; k++) {
      const row = order[k] ?? 0;
      const id = ids[row];
      if (id === previous) continue;
      previous = id;
      order[out++] = row;
    }
    i = end;
  }
  return order.subarray(0, out);
}

export interface DiffResult {
  /** Rows of `current` to send (as `members` on a full sync, `add_members` otherwise). */
  readonly send: Uint8Array;
  readonly sendCount: number;
  /** Rows of `previous` that left the cohort. */
  readonly removedRows: number[];
  /** Unique current rows in member-key order: the next snapshot. */
  readonly nextSnapshotRows: Uint32Array;
  /** For each row of `current` that is also in `previous`, its previous row (else -1). */
  readonly previousRow: Int32Array;
}

/**
 * Diff `current` (any order, may hold duplicates) against `previous` (member-key
 * order, unique, as decodeSnapshot returns it). `full`: every current member is
 * sent; removals are still computed (Brevo/Braze need them even on a full sync).
 *
 * A merge of both sides in member-key order: the current rows are put in id-hash
 * order (a radix sort of their 32-bit id hashes, linear), then walked beside the
 * previous snapshot, which is in that order already, so the previous columns are
 * read front to back and the next snapshot's rows come out in order. The ids are
 * compared only where the hashes are equal. A lookup table of previous rows cost
 * more: each of a million lookups was a few cache misses in random order (the
 * diff's largest cost in the issue 12 profile).
 */
export function diffMembers(current: MemberColumns, previous: MemberColumns, full: boolean): DiffResult {
  const n = current.ids.length;
  const ids = current.ids;
  const prevIds = previous.ids;
  const prevCount = prevIds.length;
  const prevHashes = previous.keyHashes ?? idHashes(prevIds);
  const keyHashes = current.keyHashes ?? idHashes(ids);
  const order = rowsInHashOrder(keyHashes, n);
  const send = new Uint8Array(n);
  const previousRow = new Int32Array(n).fill(-1);
  const removedRows: number[] = [];
  const next = new Uint32Array(n);
  let sendCount = 0;
  let out = 0;
  const take = (row: number, j: number) => {
    previousRow[row] = j;
    if (full || previous.hashes[j] !== current.hashes[row]) {
      send[row] = 1;
      sendCount++;
    }
  };
  let j = 0;
  for (let i = 0; i < n; ) {
    const first = order[i] ?? 0;
    const h = keyHashes[first] ?? 0;
    // Previous members with a smaller key left the cohort.
    while (j < prevCount && (prevHashes[j] ?? 0) < h) removedRows.push(j++);
    let end = i + 1;
    while (end < n && keyHashes[order[end] ?? 0] === h) end++;
    let prevEnd = j;
    while (prevEnd < prevCount && prevHashes[prevEnd] === h) prevEnd++;
    if (end - i === 1 && prevEnd - j <= 1 && (prevEnd === j || prevIds[j] === ids[first])) {
      // Nearly every member: the only one with its hash on either side.
      if (prevEnd > j) take(first, j);
      else {
        send[first] = 1;
        sendCount++;
      }
      next[out++] = first;
    } else {
      out = mergeSameHash(order.subarray(i, end), j, prevEnd, ids, prevIds, next, out, removedRows, take, (row) => {
        send[row] = 1;
        sendCount++;
      });
    }
    j = prevEnd;
    i = end;
  }
  while (j < prevCount) removedRows.push(j++);
  return { send, sendCount, removedRows, nextSnapshotRows: next.subarray(0, out), previousRow };
}

/**
 * One id hash shared by several members (a duplicate row, or a hash collision): current
 * `rows` (in row order) against previous rows [from, to) (sorted by id). The first row of
 * an id wins; the members' rows go to `next` sorted by id, as member-key order has them.
 */
function mergeSameHash(
  rows: Uint32Array,
  from: number,
  to: number,
  ids: readonly string[],
  prevIds: readonly string[],
  next: Uint32Array,
  out: number,
  removedRows: number[],
  take: (row: number, j: number) => void,
  join: (row: number) => void,
): number {
  const firstRows = new Map<string, number>();
  const taken = new Set<number>();
  for (const row of rows) {
    const id = ids[row] ?? "";
    if (firstRows.has(id)) continue; // a duplicate row: the first one wins
    firstRows.set(id, row);
    let match = -1;
    for (let k = from; k < to && match < 0; k++) if (prevIds[k] === id) match = k;
    if (match >= 0) {
      taken.add(match);
      take(row, match);
    } else join(row);
  }
  for (let k = from; k < to; k++) if (!taken.has(k)) removedRows.push(k);
  const sorted = [...firstRows.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [, row] of sorted) next[out++] = row;
  return out;
}

/** Rows 0 … n−1 sorted by their 32-bit key hash, stably: an LSD radix sort, two 16-bit passes. */
export function rowsInHashOrder(keyHashes: ArrayLike<number>, n: number): Uint32Array {
  let order = new Uint32Array(n);
  let scratch = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const counts = new Uint32Array(65_537);
  for (const shift of [0, 16]) {
    counts.fill(0);
    for (let i = 0; i < n; i++) (counts[(((keyHashes[order[i] ?? 0] ?? 0) >>> shift) & 0xffff) + 1] as number)++;
    for (let b = 1; b < counts.length; b++) counts[b] = (counts[b] ?? 0) + (counts[b - 1] ?? 0);
    for (let i = 0; i < n; i++) {
      const row = order[i] ?? 0;
      const bucket = ((keyHashes[row] ?? 0) >>> shift) & 0xffff;
      scratch[counts[bucket] ?? 0] = row;
      counts[bucket] = (counts[bucket] ?? 0) + 1;
    }
    [order, scratch] = [scratch, order];
  }
  return order;
}

/**
 * The snapshot of `rows` of `columns` as this release stores it: v3 columns
 * (snapshot-v3.ts). `header.v` and `header.count` are ignored (the writer's
 * version, the rows' count); `prop_hash` defaults like propertyHash's algorithm.
 */
export async function encodeSnapshot(
  header: SnapshotHeader,
  columns: MemberColumns,
  rows: ArrayLike<number>,
  previous?: { readonly ids: readonly string[]; readonly previousRow: Int32Array; readonly plainIds?: boolean },
): Promise<Buffer> {
  const { v: _version, count: _count, ...fields } = header;
  return encodeSnapshotV3({ ...fields, count: rows.length, prop_hash: header.prop_hash ?? PROP_HASH_DEFAULT }, columns, rows, previous);
}

/**
 * v2: gzipped JSON lines, as the release before v3 wrote them. Kept so tests and
 * benches can write what an earlier deploy left in S3; the product writes v3.
 */
export async function encodeSnapshotV2(
  header: SnapshotHeader,
  columns: MemberColumns,
  rows: ArrayLike<number>,
  reuse?: { readonly previous: MemberColumns; readonly previousRow: Int32Array },
): Promise<Buffer> {
  // Most members are unchanged: copying their stored line (read in order) costs far
  // less than formatting 1 M rows gathered in member-key order from the export.
  const stored = reuse?.previous.lines;
  // Level 1: a third of the CPU of the default level for a slightly larger object.
  const gzip = createGzip({ level: constants.Z_BEST_SPEED });
  const out: Buffer[] = [];
  gzip.on("data", (chunk: Buffer) => out.push(chunk));
  const done = new Promise<void>((resolve, reject) => {
    gzip.on("end", resolve);
    gzip.on("error", reject);
  });
  const write = (text: string) =>
    new Promise<void>((resolve) => {
      if (gzip.write(text)) resolve();
      else gzip.once("drain", resolve);
    });
  // prop_hash defaults like propertyHash's algorithm does.
  await write(JSON.stringify({ ...header, v: SNAPSHOT_VERSION, count: rows.length, prop_hash: header.prop_hash ?? PROP_HASH_DEFAULT }) + "\n");
  let batch: string[] = [];
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] ?? 0;
    const j = stored && reuse ? (reuse.previousRow[row] ?? -1) : -1;
    const line =
      j >= 0 && reuse && reuse.previous.hashes[j] === columns.hashes[row] && reuse.previous.identities[j] === columns.identities[row]
        ? stored?.[j]
        : undefined;
    batch.push(line ? line : `[${JSON.stringify(columns.ids[row] ?? "")},${columns.hashes[row] ?? 0},${JSON.stringify(columns.identities[row] ?? "")}]`);
    if (batch.length === 10_000) {
      await write(batch.join("\n") + "\n");
      batch = [];
    }
  }
  if (batch.length > 0) await write(batch.join("\n") + "\n");
  gzip.end();
  await done;
  return Buffer.concat(out);
}

function parseLine(line: string, lineNo: number): [string, number, string] {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new ValidationError(`snapshot line ${lineNo} is not JSON`);
  }
  // Hand-checked rather than zod: this runs up to 10 M times per export.
  if (
    !Array.isArray(raw) ||
    raw.length !== 3 ||
    typeof raw[0] !== "string" ||
    typeof raw[1] !== "number" ||
    typeof raw[2] !== "string"
  ) {
    throw new ValidationError(`snapshot line ${lineNo} has the wrong shape`);
  }
  // Identities are JSON.stringify output, which never holds a raw newline; v3 relies on it (snapshot-v3.ts).
  if (raw[2].includes("\n")) throw new ValidationError(`snapshot line ${lineNo} has an identity that is not JSON text`);
  return [raw[0], raw[1], raw[2]];
}

/**
 * Streams the gunzipped lines; never holds the whole text. `keep` (by id hash)
 * reads one hash range of a larger snapshot (partitions.ts) without holding the rest.
 */
export async function decodeSnapshot(
  data: Uint8Array,
  keep?: (keyHash: number) => boolean,
): Promise<{ header: SnapshotHeader | SnapshotV3Header; columns: MemberColumns }> {
  if (!isGzip(data)) return decodeColumns(data, keep);
  const lines: string[] = [];
  const keyHashes: number[] = [];
  const columns: MemberColumns = { ids: [], hashes: [], identities: [], lines, keyHashes };
  let header: SnapshotHeader | undefined;
  let previous: string | undefined;
  let previousHash = -1;
  let rest = "";
  let lineNo = 0;
  const take = (line: string) => {
    lineNo++;
    if (line === "") return;
    if (!header) {
      let raw: unknown;
      try {
        raw = JSON.parse(line);
      } catch {
        throw new ValidationError("snapshot header is not JSON");
      }
      const parsed = snapshotHeaderSchema.safeParse(raw);
      if (!parsed.success) throw new ValidationError("snapshot header has the wrong shape");
      header = parsed.data;
      return;
    }
    const [id, hash, identity] = parseLine(line, lineNo);
    const h = idHash(id);
    if (header.v === 1) {
      if (previous !== undefined && !(previous < id)) throw new ValidationError("snapshot is not sorted by id");
    } else if (previous !== undefined && compareKeys(previousHash, previous, h, id) >= 0) {
      throw new ValidationError("snapshot is not sorted by member key");
    }
    previousHash = h;
    previous = id;
    if (keep && !keep(h)) return;
    lines.push(line);
    keyHashes.push(h);
    columns.ids.push(id);
    columns.hashes.push(hash);
    columns.identities.push(identity);
  };
  const gunzip = Readable.from([Buffer.from(data)]).pipe(createGunzip());
  gunzip.setEncoding("utf8");
  for await (const chunk of gunzip) {
    const text = rest + String(chunk);
    const lines = text.split("\n");
    rest = lines.pop() ?? "";
    for (const line of lines) take(line);
  }
  take(rest);
  if (!header) throw new ValidationError("snapshot is empty");
  const propHash = header.prop_hash ?? "sha1-48";
  const identityKeys = header.identity_keys ? JSON.stringify(header.identity_keys) : undefined;
  if (header.v === 1) {
    // Written in id order by an earlier release: re-sort into member-key order once.
    const rows = sortedUniqueRows(columns);
    const sorted: MemberColumns = {
      ids: Array.from(rows, (r) => columns.ids[r] ?? ""),
      hashes: Array.from(rows, (r) => columns.hashes[r] ?? 0),
      identities: Array.from(rows, (r) => columns.identities[r] ?? ""),
      propHash,
    };
    return { header, columns: sorted };
  }
  return { header, columns: { ...columns, propHash, ...(identityKeys !== undefined ? { identityKeys } : {}) } };
}

/**
 * A v3 snapshot (snapshot-v3.ts) as member columns: the order checked as v2's is,
 * and `keep` applied, while the id hashes the diff needs are computed.
 */
function decodeColumns(data: Uint8Array, keep?: (keyHash: number) => boolean): { header: SnapshotV3Header; columns: MemberColumns } {
  const { header, ids, plainIds, hashes, identities } = decodeSnapshotV3(data);
  const keyHashes = new Array<number>(ids.length);
  let kept = 0;
  let previousHash = -1;
  let previous: string | undefined;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i] ?? "";
    const h = idHash(id);
    if (previous !== undefined && compareKeys(previousHash, previous, h, id) >= 0) throw new ValidationError("snapshot is not sorted by member key");
    previous = id;
    previousHash = h;
    keyHashes[i] = h;
    if (!keep || keep(h)) kept++;
  }
  const meta = { propHash: header.prop_hash, plainIds, ...(header.identity_keys ? { identityKeys: JSON.stringify(header.identity_keys) } : {}) };
  if (kept === ids.length) return { header, columns: { ids, hashes, identities, keyHashes, ...meta } };
  // One hash range of a snapshot stored in other partitions (partition-layout.ts readPrevious).
  const columns: MemberColumns = { ids: [], hashes: [], identities: [], keyHashes: [], ...meta };
  for (let i = 0; i < ids.length; i++) {
    const h = keyHashes[i] ?? 0;
    if (keep && !keep(h)) continue;
    columns.ids.push(ids[i] ?? "");
    columns.hashes.push(hashes[i] ?? 0);
    columns.identities.push(identities[i] ?? "");
    columns.keyHashes?.push(h);
  }
  return { header, columns };
}
