import { Readable } from "node:stream";
import { constants, createGunzip, createGzip } from "node:zlib";
import * as z from "../util/zod.js";
import { ValidationError } from "../util/errors.js";
import { parseJsonOrThrow } from "../util/json.js";
import { PROP_HASH_DEFAULT, idHash } from "./hash.js";
import type { MemberColumns } from "./member-columns.js";
import { compareKeys, sortedUniqueRows } from "./member-key.js";

/**
 * Snapshots v1 and v2: gzipped JSON lines, a header line, then one `[id, hash, identity]`
 * line per member. v2 rows are in member-key order (member-key.ts); v1 rows are in id
 * order and are re-sorted when read. The product writes v3 (snapshot-v3.ts) and reads
 * these so a snapshot stored by an earlier deploy still diffs; the v2 writer stays so
 * tests and benches can store one.
 */
export const SNAPSHOT_V2 = 2;

export const snapshotHeaderSchema = z.object({
  v: z.union([z.literal(1), z.literal(2)]),
  sync_id: z.string(),
  cohort_id: z.number(),
  run_id: z.string(),
  created_at: z.string(),
  count: z.number().check(z.int(), z.gte(0)),
  /** Partitioned snapshots (partition-layout.ts): this object holds partition `partition` of `partitions`. */
  partition: z.optional(z.number().check(z.int(), z.gte(0))),
  partitions: z.optional(z.number().check(z.int(), z.gte(1))),
  prop_hash: z.optional(z.enum(["sha1-48", "fnv-52"])),
  /** The identity properties the identities were picked with (absent in headers that do not record them). */
  identity_keys: z.optional(z.array(z.string())),
});
export type SnapshotHeader = z.infer<typeof snapshotHeaderSchema>;

/**
 * The v2 snapshot of `rows` of `columns`. `reuse`: the snapshot the rows were diffed
 * against and each row's row in it; an unchanged member's stored line is copied.
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
  await write(JSON.stringify({ ...header, v: SNAPSHOT_V2, count: rows.length, prop_hash: header.prop_hash ?? PROP_HASH_DEFAULT }) + "\n");
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
  const raw = parseJsonOrThrow(line, () => new ValidationError(`snapshot line ${lineNo} is not JSON`));
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
 * A v1 or v2 snapshot as member columns in member-key order, its order checked.
 * Streams the gunzipped lines; never holds the whole text. `keep` (by id hash)
 * reads one hash range of a larger snapshot (partition-layout.ts readPrevious)
 * without holding the rest.
 */
export async function decodeSnapshotV2(data: Uint8Array, keep?: (keyHash: number) => boolean): Promise<{ header: SnapshotHeader; columns: MemberColumns }> {
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
      const parsed = snapshotHeaderSchema.safeParse(parseJsonOrThrow(line, () => new ValidationError("snapshot header is not JSON")));
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
  // A header without prop_hash was written before fnv-52 existed (hash.ts PropHashAlgorithm).
  const propHash = header.prop_hash ?? "sha1-48";
  const identityKeys = header.identity_keys ? JSON.stringify(header.identity_keys) : undefined;
  if (header.v === 1) {
    // Stored in id order: re-sorted into member-key order once.
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
