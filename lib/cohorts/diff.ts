import { rowsSortedByUint32Key } from "../util/radix-sort.js";
import { type PropHashAlgorithm, idHashes, propertyHashOfText } from "./hash.js";
import { identityOf } from "./identity.js";
import type { MemberColumns } from "./member-columns.js";
import { lineProps, lineRecord } from "./staged-line-reader.js";
import type { StagedRows } from "./staged-rows.js";

/**
 * The diff between the last delivered snapshot and this run's export
 * (docs/vendors/cohort-sync.md §2): who joined or changed (sent), who left (removed),
 * and the rows of the next snapshot.
 */

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
 * more: each of a million lookups was a few cache misses in random order.
 */
export function diffMembers(current: MemberColumns, previous: MemberColumns, full: boolean): DiffResult {
  const n = current.ids.length;
  const ids = current.ids;
  const prevIds = previous.ids;
  const prevCount = prevIds.length;
  const prevHashes = previous.keyHashes ?? idHashes(prevIds);
  const keyHashes = current.keyHashes ?? idHashes(ids);
  const order = rowsSortedByUint32Key(keyHashes, n);
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

/**
 * This run's staged members diffed against the previous snapshot (member-key order,
 * as readPrevious returns it). Hashes come from the lines. Identities: a member
 * whose property hash is unchanged has the identity it had, when the snapshot
 * records that it was picked with the same identity properties (same properties,
 * same keys, same identity); every other member's properties are parsed for it.
 */
export function diffStaged(
  rows: StagedRows,
  previous: MemberColumns,
  full: boolean,
  propHash: PropHashAlgorithm,
  identityKeys: readonly string[],
): { current: MemberColumns; diff: DiffResult } {
  const { ids } = rows;
  let hashes = rows.storedHashes;
  if (propHash !== "fnv-52") {
    // The snapshot was written with another algorithm: its hashes are computed from the stored properties.
    hashes = [];
    for (let row = 0; row < rows.count; row++) hashes.push(propertyHashOfText(lineProps(rows.line(row)), propHash));
  }
  const identities: string[] = [];
  const current: MemberColumns = { ids, hashes, identities, keyHashes: rows.keyHashes };
  const diff = diffMembers(current, previous, full);
  const keep = previous.identityKeys === JSON.stringify(identityKeys) && (previous.propHash ?? "sha1-48") === propHash;
  for (let row = 0; row < rows.count; row++) {
    const j = keep ? (diff.previousRow[row] ?? -1) : -1;
    identities.push(j >= 0 && previous.hashes[j] === hashes[row] ? (previous.identities[j] ?? "") : identityOf(lineRecord(rows.line(row)), identityKeys));
  }
  return { current, diff };
}
