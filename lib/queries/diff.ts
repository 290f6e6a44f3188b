import { PROP_HASH_DEFAULT, propertyHash } from "../cohorts/hash.js";
import type { QueryDestination } from "../config/query-syncs.js";
import type { MappedValue, QueryRow } from "./rows.js";

/**
 * `send: "changed"`: a row is sent when the hash of its mapped values (the cohort diff engine's
 * property hash, lib/cohorts/hash.ts) differs from the hash last **delivered** for its key. A row
 * the destination did not take keeps its old hash, so it is sent again by the next run.
 * Keys absent from a run are forgotten: when such a person comes back, the row is sent again.
 */
export const QUERY_HASH_ALGORITHM = PROP_HASH_DEFAULT;

/** The values under the destination's names: what the destination receives and what is hashed. */
export function destinationValues(row: QueryRow, destination: QueryDestination): Record<string, MappedValue> {
  const out: Record<string, MappedValue> = {};
  for (const [field, name] of Object.entries(destination.attributes)) {
    const value = Object.hasOwn(row.values, field) ? row.values[field] : undefined;
    if (value !== undefined) out[name] = value;
  }
  return out;
}

export function rowHash(row: QueryRow, destination: QueryDestination): number {
  return propertyHash(destinationValues(row, destination), QUERY_HASH_ALGORITHM);
}

export interface RowPlan {
  readonly send: { readonly row: QueryRow; readonly hash: number }[];
  readonly unchanged: number;
  /** The hashes to keep if nothing is delivered: the previous hashes of the keys still present. */
  readonly carried: Map<string, number>;
}

/** Pure: which rows to send, given the last delivered hashes. */
export function planRows(
  rows: readonly QueryRow[],
  destination: QueryDestination,
  previous: ReadonlyMap<string, number>,
  mode: "changed" | "all",
): RowPlan {
  const send: { row: QueryRow; hash: number }[] = [];
  const carried = new Map<string, number>();
  let unchanged = 0;
  for (const row of rows) {
    const hash = rowHash(row, destination);
    const before = previous.get(row.key);
    if (before !== undefined) carried.set(row.key, before);
    if (mode === "changed" && before === hash) {
      unchanged += 1;
      continue;
    }
    send.push({ row, hash });
  }
  return { send, unchanged, carried };
}
