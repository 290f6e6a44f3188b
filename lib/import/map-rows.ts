import { mapAdobeEvent } from "../sources/adobe.js";
import { mapBrazeEvent } from "../sources/braze-currents.js";
import { mapGroupUpdate } from "../sources/groups.js";
import { mapNativeEvent } from "../sources/native.js";
import { mapProfileUpdate } from "../sources/profiles.js";
import type { MapContext, MappedItem } from "../sources/types.js";
import { parseJsonOrUndefined } from "../util/json.js";
import type { ImportFormat, SourceRow } from "./read-rows.js";

/**
 * One history row → the same mapper the live path uses (so Mixpanel's rules, the stage's
 * event_mapping / property_mapping and deterministic `$insert_id`s are those of live traffic).
 * Tabular rows (CSV, Parquet) are first shaped into the native record: `--map column=property`
 * renames columns, `event` names the event and every other column becomes a property.
 */
export const IMPORT_KINDS = ["events", "profiles", "groups"] as const;
export type ImportKind = (typeof IMPORT_KINDS)[number];
export const EVENT_SOURCES = ["native", "braze", "adobe"] as const;
export type EventSource = (typeof EVENT_SOURCES)[number];

export interface RowMapping {
  readonly format: ImportFormat;
  readonly kind: ImportKind;
  readonly source: EventSource;
  /** Column → property renames for tabular formats. */
  readonly columns: Readonly<Record<string, string>>;
}

/** The rejected store's `source` for what the run maps (the same names as the intake's routes). */
export function rejectedSourceName(mapping: Pick<RowMapping, "format" | "kind" | "source">): string {
  if (mapping.format === "braze-avro") return "braze-avro";
  if (mapping.kind !== "events") return mapping.kind;
  return mapping.source;
}

const ISO_DATE = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;
const NUMBER = /^-?\d+(\.\d+)?$/;

/** A tabular `time` cell: a number of seconds/ms, or an ISO 8601 date (→ ms); anything else stays as written for the rules to judge. */
function tabularTime(value: unknown): unknown {
  if (value instanceof Date) return value.getTime();
  if (typeof value === "bigint") return Number(value);
  if (typeof value !== "string") return value;
  if (NUMBER.test(value)) return Number(value);
  if (ISO_DATE.test(value)) {
    const ms = Date.parse(value);
    if (!Number.isNaN(ms)) return ms;
  }
  return value;
}

/** A Parquet value as JSON: INT64 as a number when exact, else its decimal text; dates as ISO text. */
function tabularValue(value: unknown): unknown {
  if (typeof value === "bigint") return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (value instanceof Date) return value.toISOString();
  return value;
}

/** Which column names the record for each kind; every other column goes under the kind's properties. */
const IDENTIFYING: Record<ImportKind, readonly string[]> = {
  events: ["event"],
  profiles: ["$distinct_id"],
  groups: ["$group_key", "$group_id"],
};

export function tabularRecord(row: Readonly<Record<string, unknown>>, kind: ImportKind, columns: Readonly<Record<string, string>>): unknown {
  const top: Record<string, unknown> = {};
  const properties: Record<string, unknown> = {};
  for (const [column, raw] of Object.entries(row)) {
    // An empty CSV cell is no value (CSV cannot tell "" from absent); null in Parquet likewise.
    if (raw === "" || raw === null || raw === undefined) continue;
    const name = columns[column] ?? column;
    if (IDENTIFYING[kind].includes(name)) {
      Object.defineProperty(top, name, { value: tabularValue(raw), enumerable: true, writable: true, configurable: true });
      continue;
    }
    const value = kind === "events" && name === "time" ? tabularTime(raw) : tabularValue(raw);
    Object.defineProperty(properties, name, { value, enumerable: true, writable: true, configurable: true });
  }
  if (kind === "events") return { ...top, properties };
  return { ...top, $set: properties };
}

const TABULAR: ReadonlySet<ImportFormat> = new Set(["csv", "parquet"]);

export function mapRow(row: SourceRow, mapping: RowMapping, ctx: MapContext): MappedItem {
  const index = row.position;
  if ("unparseable" in row) return { ok: false, index, code: "invalid_json", reason: row.unparseable, payload: row.text };
  const value = TABULAR.has(mapping.format) && typeof row.value === "object" && row.value !== null ? tabularRecord(row.value as Record<string, unknown>, mapping.kind, mapping.columns) : row.value;
  if (mapping.format === "braze-avro") return mapBrazeEvent(value, index, ctx);
  switch (mapping.kind) {
    case "profiles":
      return mapProfileUpdate(value, index, ctx);
    case "groups":
      return mapGroupUpdate(value, index, ctx);
    case "events":
      if (mapping.source === "braze") return mapBrazeEvent(value, index, ctx);
      if (mapping.source === "adobe") return mapAdobeEvent(value, index, ctx);
      return mapNativeEvent(value, index, ctx);
  }
}

export interface EventFilter {
  /** Inclusive lower bound on event time, ms since the epoch. */
  readonly fromMs?: number;
  /** Exclusive upper bound on event time, ms since the epoch. */
  readonly toMs?: number;
  readonly include?: ReadonlySet<string>;
  readonly exclude?: ReadonlySet<string>;
}

export function hasEventFilter(filter: EventFilter): boolean {
  return filter.fromMs !== undefined || filter.toMs !== undefined || filter.include !== undefined || filter.exclude !== undefined;
}

/** Why a mapped event is skipped by the run's filters, or undefined to keep it (the line's time is ms after the rules). */
export function filteredOut(line: string, filter: EventFilter): string | undefined {
  // The line is the mapper's own serialization, so it always parses.
  const record = (parseJsonOrUndefined(line) ?? {}) as { event?: unknown; properties?: { time?: unknown } };
  const event = typeof record.event === "string" ? record.event : "";
  if (filter.include && !filter.include.has(event)) return "event_not_included";
  if (filter.exclude?.has(event)) return "event_excluded";
  const time = typeof record.properties?.time === "number" ? record.properties.time : undefined;
  if (time !== undefined && filter.fromMs !== undefined && time < filter.fromMs) return "before_from";
  if (time !== undefined && filter.toMs !== undefined && time >= filter.toMs) return "not_before_to";
  return undefined;
}
