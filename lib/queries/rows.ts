import * as z from "../util/zod.js";
import { formatZodIssues } from "../config/env.js";
import type { QuerySync } from "../config/query-syncs.js";
import type { EngagePage } from "../mixpanel/query.js";

/**
 * The trust boundary of a query extract: every row Mixpanel answers (an Engage profile or a
 * JQL result element) is judged on its own by one schema, so one bad row is counted and
 * stored with its reason and never fails the run. A row becomes `{key, values}`: the key
 * names the person, the values are the result fields the destination maps, and nothing else
 * of the row is kept.
 */
export type MappedValue = string | number | boolean | null | (string | number | boolean)[];

export interface QueryRow {
  readonly key: string;
  /** Result field → value, only the fields the destination maps (absent fields are left out). */
  readonly values: Readonly<Record<string, MappedValue>>;
}

export type RowRejectionCode = "not_an_object" | "missing_key" | "bad_value" | "duplicate_key" | "destination_refused";

export interface RowRejection {
  /** Position of the row in the query's answer. */
  readonly index: number;
  readonly code: RowRejectionCode;
  readonly reason: string;
  /** The row as Mixpanel answered it, for the operator to inspect. */
  readonly payload: unknown;
}

/** Brevo and Braze attribute values are scalars or lists of scalars; a nested object has no attribute type. */
const scalar = z.union([z.string().check(z.maxLength(10_000)), z.number().check(z.refine(Number.isFinite, "must be a finite number")), z.boolean()]);
const mappedValueSchema = z.union([scalar, z.null(), z.array(scalar).check(z.maxLength(1000))]);

/** Mixpanel ids: a non-empty string, or an integer (Engage types `$distinct_id` as one), kept as its digits. */
const keySchema = z.union([
  z.string().check(
    z.minLength(1, "is empty"),
    z.maxLength(1024),
    z.refine((value) => value.trim() !== "", "is blank"),
  ),
  z.pipe(
    z.number().check(z.refine(Number.isSafeInteger, "is a number but not a safe integer")),
    z.transform(String),
  ),
]);

const rowObjectSchema = z.record(z.string(), z.unknown());

export interface RowsRead {
  readonly rows: QueryRow[];
  readonly rejected: RowRejection[];
}

/** Reads the result field `field` of a row; `distinct_id` and `$distinct_id` name the Engage id. */
function fieldOf(row: Record<string, unknown>, field: string): unknown {
  return Object.hasOwn(row, field) ? row[field] : undefined;
}

/**
 * Pure: judges every raw row against the sync's key and mapping. `seenKeys` carries the keys of
 * earlier pages of the same result: a later row of a key already read is refused
 * (`duplicate_key`), since which of the two the destination should hold is not knowable.
 */
export function readRows(
  raw: readonly unknown[],
  sync: Pick<QuerySync, "key" | "destination">,
  startIndex = 0,
  seenKeys: Set<string> = new Set(),
): RowsRead {
  const rows: QueryRow[] = [];
  const rejected: RowRejection[] = [];
  const fields = Object.keys(sync.destination.attributes);
  raw.forEach((payload, offset) => {
    const index = startIndex + offset;
    const object = Array.isArray(payload) ? undefined : rowObjectSchema.safeParse(payload);
    if (!object?.success) {
      rejected.push({ index, code: "not_an_object", reason: "a result row must be a JSON object of fields", payload });
      return;
    }
    const row = object.data;
    const key = keySchema.safeParse(fieldOf(row, sync.key));
    if (!key.success) {
      const missing = fieldOf(row, sync.key) === undefined || fieldOf(row, sync.key) === null;
      rejected.push({
        index,
        code: "missing_key",
        reason: missing ? `the row has no "${sync.key}" (the sync's key)` : `"${sync.key}" ${formatZodIssues(key.error)}`,
        payload,
      });
      return;
    }
    const values: Record<string, MappedValue> = {};
    for (const field of fields) {
      const value = fieldOf(row, field);
      if (value === undefined) continue;
      const parsed = mappedValueSchema.safeParse(value);
      if (!parsed.success) {
        rejected.push({ index, code: "bad_value", reason: `"${field}" is not a string, number, boolean, null or list of those`, payload });
        return;
      }
      values[field] = parsed.data;
    }
    if (seenKeys.has(key.data)) {
      rejected.push({ index, code: "duplicate_key", reason: `a row with the key "${key.data}" came earlier in this result`, payload });
      return;
    }
    seenKeys.add(key.data);
    rows.push({ key: key.data, values });
  });
  return { rows, rejected };
}

/** An Engage page's profiles as result rows: `distinct_id` (and `$distinct_id`) plus the properties. */
export function engageRows(page: EngagePage): Record<string, unknown>[] {
  return page.results.map((member) => ({ ...member.$properties, distinct_id: member.$distinct_id, $distinct_id: member.$distinct_id }));
}
