import { ValidationError } from "../util/errors.js";
import { PROP_HASH_DEFAULT, idHash } from "./hash.js";
import type { MemberColumns } from "./member-columns.js";
import { compareKeys } from "./member-key.js";
import { type SnapshotHeader, decodeSnapshotV2 } from "./snapshot-v2.js";
import { type SnapshotV3Header, decodeSnapshotV3, encodeSnapshotV3, isGzip } from "./snapshot-v3.js";

/**
 * The last delivered member set as stored (docs/vendors/cohort-sync.md §2): read from
 * any version an S3 object may hold, written as v3. A snapshot holds per member
 * `[id, hash, identity]` in member-key order (member-key.ts); v3 (snapshot-v3.ts)
 * stores them as columns, v1 and v2 (snapshot-v2.ts) as gzipped JSON lines, told
 * apart by the gzip magic bytes.
 */

/**
 * The snapshot of `rows` of `columns`, as v3. `header.v` and `header.count` are
 * ignored (the writer's version, the rows' count); `prop_hash` defaults like
 * propertyHash's algorithm.
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
 * A snapshot of any version as member columns in member-key order, with the id hashes
 * the diff needs. `keep` (by id hash) reads one hash range of a larger snapshot
 * (partition-layout.ts readPrevious) without holding the rest.
 */
export async function decodeSnapshot(
  data: Uint8Array,
  keep?: (keyHash: number) => boolean,
): Promise<{ header: SnapshotHeader | SnapshotV3Header; columns: MemberColumns }> {
  if (isGzip(data)) return decodeSnapshotV2(data, keep);
  return decodeColumns(data, keep);
}

/**
 * A v3 snapshot as member columns: the order checked as v2's is, and `keep` applied,
 * while the id hashes the diff needs are computed.
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
  // One hash range of a snapshot stored in other partitions.
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
