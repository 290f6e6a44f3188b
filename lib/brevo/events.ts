import * as z from "../util/zod.js";
import { parseJsonWith } from "../util/json.js";
import type { IdentityMode } from "../config/mapping.js";
import { BREVO_NAME, type BrevoConfig } from "../config/brevo.js";
import { identifierValue } from "./identity.js";

/**
 * Pure: one queued Mixpanel /import event (the same line the Mixpanel forwarder sends)
 * → one Brevo event for `POST /v3/events/batch` (docs/vendors/brevo-connector.md §1).
 *
 * - Name: `brevo.event_mapping[event]`; an unmapped event is skipped (`unmapped_event`)
 *   unless `forward_unmapped_events`, then `brevoEventNameFor(event)`.
 * - Identifiers: each configured one (`brevo.identifiers`) whose value is present; none → skipped
 *   (`no_identifier`). `ext_id` follows the identity mode (lib/brevo/identity.ts).
 * - `event_date`: the event's `time` (ms) as ISO 8601 UTC (`…Z`, an offset Brevo accepts).
 * - `event_properties`: every property except `time` and `token`, keys made valid by
 *   `brevoKeyFor` at every nesting level (nested objects and arrays are kept: Brevo accepts
 *   them), `null` values dropped; when the object passes Brevo's 50 KB cap the largest
 *   top-level properties are dropped first until it fits (their keys are returned in `trimmed`).
 */
export const MAX_EVENT_PROPERTIES_BYTES = 50 * 1024;
const MAX_NAME_LENGTH = 255;
const OMITTED_PROPERTIES = new Set(["time", "token"]);

export interface BrevoEvent {
  event_name: string;
  identifiers: { ext_id?: string; email_id?: string; phone_id?: string };
  event_date?: string;
  event_properties?: Record<string, unknown>;
}

export type BrevoEventResult =
  | { readonly status: "send"; readonly event: BrevoEvent; readonly trimmed: readonly string[]; readonly insertId?: string }
  | { readonly status: "skip"; readonly code: "unmapped_event" | "no_identifier"; readonly reason: string }
  | { readonly status: "reject"; readonly code: "unreadable_record"; readonly reason: string };

/**
 * Deterministic Brevo-valid name for a Mixpanel name: leading `$` dropped, every run of
 * characters outside `A–Z a–z 0–9 - _` becomes one `_`, cut to 255 characters; an empty
 * result is `fallback`. "Sign Up" → "Sign_Up", "$experiment_started" → "experiment_started".
 */
export function brevoKeyFor(name: string, fallback = ""): string {
  const cleaned = name.replace(/^\$+/, "").replace(/[^A-Za-z0-9_-]+/g, "_").slice(0, MAX_NAME_LENGTH);
  return cleaned === "" ? fallback : cleaned;
}

export function brevoEventNameFor(event: string): string {
  return brevoKeyFor(event, "event");
}

const importEventSchema = z.object({
  event: z.string(),
  properties: z.record(z.string(), z.unknown()),
});

/** Keys made valid; already valid keys win a collision with a renamed one, then first in key order. */
function cleanValue(value: unknown): unknown {
  if (value === null || value === undefined) return undefined;
  if (Array.isArray(value)) return value.map(cleanValue).filter((item) => item !== undefined);
  if (typeof value === "object") return cleanObject(Object.fromEntries(Object.entries(value)));
  if (typeof value === "number" && !Number.isFinite(value)) return undefined;
  return value;
}

function cleanObject(object: Readonly<Record<string, unknown>>, omit?: ReadonlySet<string>): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  const entries = Object.entries(object).filter(([key]) => !omit?.has(key));
  const valid = entries.filter(([key]) => BREVO_NAME.test(key));
  const renamed = entries.filter(([key]) => !BREVO_NAME.test(key));
  for (const [key, value] of [...valid, ...renamed]) {
    const name = brevoKeyFor(key);
    if (name === "" || Object.hasOwn(result, name)) continue;
    const cleaned = cleanValue(value);
    if (cleaned !== undefined) Object.defineProperty(result, name, { value: cleaned, enumerable: true, writable: true, configurable: true });
  }
  return result;
}

/** Drops the largest top-level properties until the object fits Brevo's 50 KB cap. */
function fitProperties(properties: Record<string, unknown>): { properties: Record<string, unknown>; trimmed: string[] } {
  const bytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value));
  let total = bytes(properties);
  if (total <= MAX_EVENT_PROPERTIES_BYTES) return { properties, trimmed: [] };
  const bySize = Object.entries(properties)
    .map(([key, value]) => ({ key, size: bytes(key) + bytes(value) + 2 }))
    .sort((a, b) => b.size - a.size || (a.key < b.key ? -1 : 1));
  const kept = { ...properties };
  const trimmed: string[] = [];
  for (const { key, size } of bySize) {
    if (total <= MAX_EVENT_PROPERTIES_BYTES) break;
    delete kept[key];
    trimmed.push(key);
    total -= size;
  }
  return { properties: kept, trimmed };
}

export function mapEventToBrevo(line: string, config: BrevoConfig, mode: IdentityMode): BrevoEventResult {
  const parsed = parseJsonWith(importEventSchema, line);
  if (!parsed.success) return { status: "reject", code: "unreadable_record", reason: "not a Mixpanel event {event, properties}" };
  const { event, properties } = parsed.data;
  const mapped = Object.hasOwn(config.event_mapping, event) ? config.event_mapping[event] : undefined;
  if (mapped === undefined && !config.forward_unmapped_events) {
    return { status: "skip", code: "unmapped_event", reason: `${event} is not in brevo.event_mapping` };
  }
  const identifiers: BrevoEvent["identifiers"] = {};
  for (const key of ["ext_id", "email_id", "phone_id"] as const) {
    const source = config.identifiers[key];
    const value = source === undefined ? undefined : identifierValue(source, properties.distinct_id, properties, mode);
    if (value !== undefined) identifiers[key] = value;
  }
  if (Object.keys(identifiers).length === 0) {
    return { status: "skip", code: "no_identifier", reason: `${event} carries none of the identifiers in brevo.identifiers` };
  }
  const fitted = fitProperties(cleanObject(properties, OMITTED_PROPERTIES));
  const time = properties.time;
  const brevoEvent: BrevoEvent = {
    event_name: mapped ?? brevoEventNameFor(event),
    identifiers,
    ...(typeof time === "number" && Number.isFinite(time) ? { event_date: new Date(time).toISOString() } : {}),
    ...(Object.keys(fitted.properties).length > 0 ? { event_properties: fitted.properties } : {}),
  };
  const insertId = typeof properties.$insert_id === "string" ? properties.$insert_id : undefined;
  return { status: "send", event: brevoEvent, trimmed: fitted.trimmed, ...(insertId !== undefined ? { insertId } : {}) };
}
