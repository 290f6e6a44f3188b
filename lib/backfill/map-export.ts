import * as z from "../util/zod.js";
import { parseJsonWith } from "../util/json.js";
import type { BrevoConfig } from "../config/brevo.js";
import type { IdentityMode } from "../config/mapping.js";
import { mapEventToBrevo } from "../brevo/events.js";
import type { MappedRecord } from "../sources/types.js";

/**
 * Pure: one line of Mixpanel's raw export → the queued Mixpanel record the Brevo forwarder reads
 * (the same line shape the intake queues), or why it is left out.
 *
 * Whether an event goes to Brevo is decided by the forwarder's own mapper (lib/brevo/events.ts:
 * `brevo.event_mapping`, `forward_unmapped_events`, `brevo.identifiers` and the identity mode), so
 * the backfill never queues what the forwarder would skip: an unmapped event is counted as
 * skipped, one without any configured identifier as refused (`no_identifier`).
 *
 * The export adds Mixpanel's own bookkeeping to each event (when it was processed, which API took
 * it); live events never carry it, so it is left out and the Brevo event looks like a live one.
 * `time` is asked for in ms (`time_in_ms=true`); a value in seconds (an answer without that
 * option) is read as seconds.
 */
const exportedEventSchema = z.object({
  event: z.string(),
  properties: z.record(z.string(), z.unknown()),
});

/** Added by Mixpanel at ingestion (docs/vendors/mixpanel-api.md §10 "Added at ingestion", "Raw event export"). */
const INGESTION_BOOKKEEPING = new Set(["mp_processing_time_ms", "$mp_api_endpoint", "$mp_api_timestamp_ms"]);
/** Below this a `time` is in seconds (year 5138 in seconds; 1973 in ms). */
const SECONDS_BELOW = 1e11;

export type ExportedEventOutcome =
  | { readonly outcome: "record"; readonly record: MappedRecord; readonly event: string }
  | { readonly outcome: "unmapped"; readonly event: string }
  | { readonly outcome: "refused"; readonly code: string; readonly reason: string };

export function mapExportedLine(line: string, index: number, brevo: BrevoConfig, mode: IdentityMode): ExportedEventOutcome {
  const parsed = parseJsonWith(exportedEventSchema, line);
  if (!parsed.success) return { outcome: "refused", code: "unreadable_export_line", reason: "not a Mixpanel event {event, properties}" };
  const { event } = parsed.data;
  const properties: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(parsed.data.properties)) {
    if (INGESTION_BOOKKEEPING.has(key)) continue;
    Object.defineProperty(properties, key, { value, enumerable: true, writable: true, configurable: true });
  }
  const time = properties.time;
  if (typeof time !== "number" || !Number.isFinite(time)) return { outcome: "refused", code: "invalid_time", reason: `${event} has no numeric time` };
  if (time < SECONDS_BELOW) properties.time = Math.round(time * 1000);
  const recordLine = JSON.stringify({ event, properties });
  const decision = mapEventToBrevo(recordLine, brevo, mode);
  if (decision.status === "skip" && decision.code === "unmapped_event") return { outcome: "unmapped", event };
  if (decision.status !== "send") return { outcome: "refused", code: decision.code, reason: decision.reason };
  const insertId = typeof properties.$insert_id === "string" ? properties.$insert_id : undefined;
  return { outcome: "record", event, record: { ok: true, index, kind: "event", line: recordLine, ...(insertId !== undefined ? { insertId } : {}) } };
}
