import * as z from "../util/zod.js";
import { ValidationError } from "../util/errors.js";
import { applyEventRules } from "../mixpanel/event-rules.js";
import {
  CUSTOM_EVENT_TYPE,
  PURCHASE_EVENT_TYPE,
  brazeEventLabel,
  normalizeBrazeEventType,
  type BrazeEventType,
} from "../vocabulary/braze-labels.js";
import { INVALID_PROPERTY_NAME, findProtoKey, protoKeyReason, rejectProtoKey } from "./property-names.js";
import { jsonObjectSchema } from "../util/json-object.js";
import { renamed } from "../util/renames.js";
import type { MapContext, MappedItem, RejectedItem } from "./types.js";
import { parseJsonOrUndefined } from "../util/json.js";
import { CUSTOM_EVENT_PROPERTY_PREFIX, PURCHASE_PROPERTY_PREFIX } from "../vocabulary/braze-property-prefixes.js";

export { CUSTOM_EVENT_PROPERTY_PREFIX, PURCHASE_PROPERTY_PREFIX };

/**
 * Braze Currents → Mixpanel /import records, mirroring Braze's own Mixpanel connector
 * so dashboards built on it keep working (docs/vendors/braze-currents.md §6, §7).
 * Shared by the custom-HTTP intake (`{"events":[...]}`) and the Avro/S3 reader, which
 * first reshapes its flat records into this layout (lib/sources/braze-avro.ts).
 */

export const BRAZE_PARTNER_ID = "braze";

/** Field renames of Braze's Mixpanel connector (§6). */
const FIELD_RENAMES: Readonly<Record<string, string>> = {
  device_model: "$device",
  os_version: "$os",
  content_card_id: "card_id",
};

/** Not sent by Braze's Mixpanel connector (§6); `external_user_id` becomes distinct_id. */
const FIELDS_NOT_SENT = new Set(["user_id", "timezone", "external_user_id"]);

/** Fields of the event itself, handled explicitly rather than copied. */
const EVENT_ENVELOPE_FIELDS = new Set(["event_type", "id", "time", "user", "properties"]);

/**
 * One Currents event in the custom-HTTP layout. Loose on purpose: Braze adds fields
 * and event types without notice and the contract is to pass them through (§1).
 */
const brazeUserSchema = z.looseObject({
  external_user_id: z.nullish(z.string()),
  device_id: z.optional(z.unknown()),
});

const brazeEventSchema = z.looseObject({
  event_type: z.string().check(z.minLength(1)),
  id: z.nullish(z.string()),
  time: z.optional(z.unknown()),
  user: z.nullish(brazeUserSchema),
  properties: z.nullish(jsonObjectSchema),
});

export type BrazeEvent = z.infer<typeof brazeEventSchema>;

const brazeBatchSchema = z.looseObject({ events: z.array(z.unknown()) });
/** Built once: constructing a zod schema per event cost more than parsing with it (CPU profile of the intake). */
const customPropertiesSchema = z.record(z.string(), z.unknown());

type CustomPropertiesResult = { ok: true; properties: Record<string, unknown> } | { ok: false; code: string; reason: string };

/**
 * Custom-event and purchase properties: an object in the HTTP layout, a JSON-encoded
 * string in the Avro layout (§3). Either is accepted here. The text is checked for a
 * "__proto__" key after decoding: the item-level check cannot see inside a string.
 */
function decodeCustomProperties(raw: unknown, field: string): CustomPropertiesResult {
  const value = typeof raw === "string" ? parseJsonOrUndefined(raw) : raw;
  const protoKey = findProtoKey(value, `properties.${field}`);
  if (protoKey !== undefined) return { ok: false, code: INVALID_PROPERTY_NAME, reason: protoKeyReason(protoKey) };
  const object = customPropertiesSchema.safeParse(value);
  if (!object.success || Array.isArray(value)) {
    return { ok: false, code: "invalid_custom_properties", reason: `properties.${field} must be an object or a JSON-encoded object` };
  }
  return { ok: true, properties: object.data };
}

/**
 * Unwraps `{"events":[...]}`. No body, `null` and `[]` are the empty no-op Braze uses to
 * check the token (§1); anything else that is not the envelope is unusable as a whole.
 */
export function unwrapBrazeBatch(body: unknown): unknown[] {
  if (body === undefined || body === null || body === "") return [];
  if (Array.isArray(body) && body.length === 0) return [];
  const parsed = brazeBatchSchema.safeParse(body);
  if (!parsed.success) throw new ValidationError('Braze Currents body must be an object {"events": [...]}');
  return parsed.data.events;
}

/**
 * `Braze-Currents-Version` changes only on a breaking change (§1). A version we do not know
 * is logged, not refused: a 4xx would make Braze retry and finally drop the data, while the
 * mapper already tolerates unknown fields and rejects unknown event types one by one.
 */
export const KNOWN_CURRENTS_VERSIONS: readonly string[] = ["1"];

export function isKnownCurrentsVersion(header: string | undefined): boolean {
  return header === undefined || KNOWN_CURRENTS_VERSIONS.includes(header.trim());
}

export function mapBrazeCurrentsBatch(body: unknown, ctx: MapContext): MappedItem[] {
  return unwrapBrazeBatch(body).map((event, index) => mapBrazeEvent(event, index, ctx));
}

function reject(index: number, payload: unknown, code: string, reason: string, dropped = false): RejectedItem {
  return dropped ? { ok: false, index, code, reason, payload, dropped } : { ok: false, index, code, reason, payload };
}

function isEventTypeEnabled(eventType: BrazeEventType, ctx: MapContext): boolean {
  const allowed = ctx.config.braze.event_types;
  if (allowed === "all") return true;
  return allowed.some((name) => normalizeBrazeEventType(name) === eventType);
}

/** Adds Braze fields to the Mixpanel properties' entries with the connector's renames and omissions. */
function copyFields(target: [string, unknown][], source: Readonly<Record<string, unknown>>, skip: ReadonlySet<string>): void {
  for (const key of Object.keys(source)) {
    if (skip.has(key) || FIELDS_NOT_SENT.has(key)) continue;
    target.push([renamed(key, FIELD_RENAMES), source[key]]);
  }
}

const USER_FIELDS_SET_APART: ReadonlySet<string> = new Set(["device_id"]);

/** Maps one Currents event (custom-HTTP layout) to an /import record or a typed rejection. */
export function mapBrazeEvent(item: unknown, index: number, ctx: MapContext): MappedItem {
  // Before any zod parse: the schemas' records would drop a "__proto__" key without a trace.
  const protoKey = rejectProtoKey(item, index);
  if (protoKey) return protoKey;
  const parsed = brazeEventSchema.safeParse(item);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.join(".") || "(event)";
    return reject(index, item, "invalid_shape", `${where}: ${issue?.message ?? "not a Braze Currents event"}`);
  }
  const event = parsed.data;

  // First, as Braze's connector does: events of users without an external id are never sent (§6),
  // whatever their type, so they are dropped before the type is looked at.
  const externalUserId = event.user?.external_user_id;
  if (externalUserId === undefined || externalUserId === null || externalUserId.trim() === "") {
    return reject(index, item, "no_external_user_id", "user.external_user_id is missing: Braze's Mixpanel connector skips such users", true);
  }

  const eventType = normalizeBrazeEventType(event.event_type);
  if (eventType === undefined) {
    // In no published Currents list (§8): kept in the rejected store for replay once it is named; never fails the batch (§1).
    return reject(index, item, "unsupported_event_type", `Braze event type "${event.event_type}" is not a published Currents event type`);
  }
  if (!isEventTypeEnabled(eventType, ctx)) {
    return reject(index, item, "event_type_not_enabled", `${eventType} is not in this stage's braze.event_types`, true);
  }

  const brazeProperties = event.properties ?? {};
  let customEventName = "";
  if (eventType === CUSTOM_EVENT_TYPE) {
    const name = brazeProperties.name;
    if (typeof name !== "string" || name.trim() === "") {
      return reject(index, item, "missing_custom_event_name", "properties.name (the custom event name) is required");
    }
    customEventName = name;
  }

  // The properties are collected as entries and made an object once (Object.fromEntries: a later
  // entry for a key replaces the earlier value in its place, as the assignments it replaces did).
  // Assigned one by one, the ~30 keys of a Braze event turned the object into a slow dictionary,
  // which made copying and serializing it a large part of the intake's CPU in profiles.
  const entries: [string, unknown][] = [];
  const skipInProperties = new Set<string>();
  // The custom event name lives in the event label; Braze's glossary lists no `name` property in its Mixpanel tab.
  if (eventType === CUSTOM_EVENT_TYPE) skipInProperties.add("name");

  const prefixed: [string, unknown][] = [];
  for (const [eventTypeWithProps, field, prefix] of [
    [CUSTOM_EVENT_TYPE, "custom_properties", CUSTOM_EVENT_PROPERTY_PREFIX],
    [PURCHASE_EVENT_TYPE, "purchase_properties", PURCHASE_PROPERTY_PREFIX],
  ] as const) {
    if (eventType !== eventTypeWithProps) continue;
    skipInProperties.add(field);
    const raw = brazeProperties[field];
    if (raw === undefined || raw === null) continue;
    const custom = decodeCustomProperties(raw, field);
    if (!custom.ok) return reject(index, item, custom.code, custom.reason);
    // Keys of one decoded object, so each prefixed key occurs once.
    for (const key of Object.keys(custom.properties)) prefixed.push([`${prefix}${key}`, custom.properties[key]]);
  }

  // Unknown top-level and user fields are passed through like every other field (§1, §6).
  copyFields(entries, event, EVENT_ENVELOPE_FIELDS);
  copyFields(entries, event.user ?? {}, USER_FIELDS_SET_APART);
  copyFields(entries, brazeProperties, skipInProperties);
  // A loop, not push(...prefixed): a hostile object with ~100k custom properties would exceed the call's argument limit.
  for (const entry of prefixed) entries.push(entry);

  const deviceId = event.user?.device_id;
  if (deviceId !== undefined && deviceId !== null) entries.push(["device_id", deviceId]);
  entries.push(["$partner_id", BRAZE_PARTNER_ID], ["distinct_id", externalUserId]);
  if (event.id !== undefined && event.id !== null) entries.push(["$insert_id", event.id]);
  // Seconds as Braze sends them; applyEventRules turns them into integer ms (project decision, mixpanel-api.md §4).
  entries.push(["time", event.time]);
  const properties: Record<string, unknown> = Object.fromEntries(entries);

  const label = brazeEventLabel(eventType, customEventName);
  const name = renamed(label, ctx.config.event_mapping);
  const result = applyEventRules({ event: name, properties }, ctx.nowMs);
  if (!result.ok) return reject(index, item, result.code, result.reason);
  return { ok: true, index, kind: "event", line: result.line, insertId: result.insertId };
}
