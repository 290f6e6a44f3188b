import { rowsSortedByUint32Key } from "../util/radix-sort.js";
import { idHashes } from "./hash.js";
import type { MemberColumns } from "./member-columns.js";

/**
 * Member-key order, the order of every stored snapshot and of the diff's merge: by
 * the id hash (hash.ts idHash), then by the id. Sorting by a 32-bit number is a radix
 * sort (linear) where sorting a million id strings costs seconds, and the same number
 * picks a member's partition (partition-layout.ts), so every partition of a snapshot
 * is itself in member-key order.
 */
export function compareKeys(hashA: number, idA: string, hashB: number, idB: string): number {
  if (hashA !== hashB) return hashA < hashB ? -1 : 1;
  return idA < idB ? -1 : idA > idB ? 1 : 0;
}

/**
 * Row order sorted by member key; for duplicate ids the first row wins (later
 * ones are dropped). A radix sort on the 32-bit id hash (stable), then runs of
 * equal hashes (collisions, duplicates) sorted by id.
 */
export function sortedUniqueRows(columns: MemberColumns, keyHashes: Uint32Array = idHashes(columns.ids)): Uint32Array {
  const n = columns.ids.length;
  const order = rowsSortedByUint32Key(keyHashes, n);
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
