import * as z from "../util/zod.js";
import { ValidationError } from "../util/errors.js";
import { MAX_CONTAINER_DEPTH, applyEventRules, deriveInsertId } from "../mixpanel/event-rules.js";
import { applyIdentityMode, isIdentityEvent } from "./identity.js";
import { INVALID_PROPERTY_NAME, findProtoKey, protoKeyReason, rejectProtoKey } from "./property-names.js";
import { findTooDeep, TOO_DEEP } from "./nesting.js";
import { renamed, setOwn } from "../util/renames.js";
import type { MapContext, MappedItem, RejectedItem } from "./types.js";
import { parseJson } from "../util/json.js";

/**
 * Adobe Experience Platform event forwarding → Mixpanel /import records. Adobe's
 * Cloud Connector POSTs the body the Mixpanel extension would have sent to /track:
 * `[{"event", "properties": {token, time, distinct_id, $insert_id, …}}]`, optionally with
 * the extension's `custom_properties` still separate (docs/vendors/adobe-forwarding.md §2, §3, §5).
 */

/** One key/value row of the extension's "Event Properties" table; `key` may be a dotted / `[n]` path. */
const keyValueRowSchema = z.object({ key: z.string().check(z.minLength(1)), value: z.unknown() });
/** Built once: constructing a zod schema per event cost more than parsing with it (CPU profile of the intake). */
const keyValueRowsSchema = z.array(keyValueRowSchema);
const customObjectSchema = z.record(z.string(), z.unknown());

const adobeEventSchema = z.looseObject({
  event: z.string().check(z.trim(), z.minLength(1, "event (the event type) is required")),
  properties: z.optional(z.record(z.string(), z.unknown())),
  custom_properties: z.optional(z.unknown()),
});

/**
 * Adobe's extension sends one event per call; the relay also takes arrays (one request per batch).
 * A single object is passed on as received, not copied through a zod record, which would drop a
 * "__proto__" key before the mapper could refuse it.
 */
export function unwrapAdobeBatch(body: unknown): unknown[] {
  if (Array.isArray(body)) return body;
  if (body !== null && typeof body === "object") return [body];
  throw new ValidationError("Adobe body must be an event object or a JSON array of events");
}

export function mapAdobeBatch(body: unknown, ctx: MapContext): MappedItem[] {
  return unwrapAdobeBatch(body).map((item, index) => mapAdobeEvent(item, index, ctx));
}

type CustomPropertiesResult = { ok: true; properties: Record<string, unknown> } | { ok: false; code: string; reason: string };

function invalidCustom(reason: string): CustomPropertiesResult {
  return { ok: false, code: "invalid_custom_properties", reason };
}

function invalidName(path: string): CustomPropertiesResult {
  return { ok: false, code: INVALID_PROPERTY_NAME, reason: protoKeyReason(path) };
}

/** A path like `cart.items[0].sku` → ["cart", "items", 0, "sku"]. */
function parsePath(path: string): (string | number)[] | undefined {
  const segments: (string | number)[] = [];
  for (const part of path.split(".")) {
    const match = /^([^[\]]*)((?:\[\d+\])*)$/.exec(part);
    if (!match || (match[1] === "" && match[2] === "")) return undefined;
    if (match[1] !== "") segments.push(match[1] ?? "");
    for (const index of (match[2] ?? "").matchAll(/\[(\d+)\]/g)) segments.push(Number(index[1]));
  }
  return segments.length > 0 ? segments : undefined;
}

type Container = Record<string, unknown> | unknown[];

function isContainer(value: unknown): value is Container {
  return value !== null && typeof value === "object";
}

/** Mixpanel arrays hold < 255 items (mixpanel-api.md §4); a larger index would also allocate a huge sparse array. */
const MAX_ROW_INDEX = 253;

function childOf(container: Container, segment: string | number): unknown {
  if (Array.isArray(container)) return typeof segment === "number" ? container[segment] : undefined;
  return typeof segment === "string" && Object.hasOwn(container, segment) ? container[segment] : undefined;
}

function setChild(container: Container, segment: string | number, value: unknown): boolean {
  if (Array.isArray(container)) {
    if (typeof segment !== "number") return false;
    container[segment] = value;
    return true;
  }
  if (typeof segment !== "string") return false;
  setOwn(container, segment, value);
  return true;
}

/** Builds nested objects/arrays from key/value rows, as Adobe's entityVariablesConverter does (§2). */
function rowsToObject(rows: readonly { key: string; value: unknown }[]): CustomPropertiesResult {
  const root: Record<string, unknown> = {};
  for (const { key, value } of rows) {
    const path = parsePath(key);
    if (!path || typeof path[0] !== "string") return invalidCustom(`custom_properties row key "${key}" is not a property path`);
    if (path.includes("__proto__")) return invalidName(`custom_properties row key "${key}"`);
    if (path.some((segment) => typeof segment === "number" && segment > MAX_ROW_INDEX)) {
      return invalidCustom(`custom_properties row key "${key}" has an index above ${MAX_ROW_INDEX}`);
    }
    let container: Container = root;
    for (let i = 0; i < path.length - 1; i++) {
      const segment = path[i] ?? "";
      const existing = childOf(container, segment);
      const next: Container = isContainer(existing) ? existing : typeof path[i + 1] === "number" ? [] : {};
      if (!setChild(container, segment, next)) return invalidCustom(`custom_properties row key "${key}" conflicts with another row`);
      container = next;
    }
    if (!setChild(container, path[path.length - 1] ?? "", value)) {
      return invalidCustom(`custom_properties row key "${key}" conflicts with another row`);
    }
  }
  return { ok: true, properties: root };
}

/**
 * `custom_properties` in any of the extension's entry modes: an object, raw JSON text,
 * or key/value rows. Text that is not a JSON object is refused: Adobe would spread it
 * into keys "0", "1", … (§2), which is never what the sender meant. A "__proto__" key
 * (in the decoded text, a row path or the object) is refused as `invalid_property_name`.
 */
export function resolveCustomProperties(raw: unknown): CustomPropertiesResult {
  if (raw === undefined || raw === null || raw === "") return { ok: true, properties: {} };
  if (typeof raw === "string") {
    const json = parseJson(raw);
    if (!json.ok) return invalidCustom("custom_properties is text that is not JSON (an unresolved data element?)");
    const parsed = json.value;
    if (!isContainer(parsed)) return invalidCustom("custom_properties JSON text must hold an object or [{key, value}] rows");
    return resolveCustomProperties(parsed);
  }
  const protoKey = findProtoKey(raw, "custom_properties");
  if (protoKey !== undefined) return invalidName(protoKey);
  const rows = keyValueRowsSchema.safeParse(raw);
  if (rows.success) return rowsToObject(rows.data);
  const object = customObjectSchema.safeParse(raw);
  if (object.success && !Array.isArray(raw)) return { ok: true, properties: object.data };
  return invalidCustom("custom_properties must be an object, JSON text of an object, or [{key, value}] rows");
}

function reject(index: number, payload: unknown, code: string, reason: string): RejectedItem {
  return { ok: false, index, code, reason, payload };
}

function isMissing(value: unknown): boolean {
  return value === undefined || value === null || value === "";
}

export function mapAdobeEvent(item: unknown, index: number, ctx: MapContext): MappedItem {
  // Before any zod parse: z.record would drop a "__proto__" property without a trace.
  const protoKey = rejectProtoKey(item, index);
  if (protoKey) return protoKey;
  const parsed = adobeEventSchema.safeParse(item);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return reject(index, item, "invalid_shape", `${issue?.path.join(".") || "(event)"}: ${issue?.message ?? "not an Adobe event"}`);
  }
  const { event, properties = {}, custom_properties } = parsed.data;
  const custom = resolveCustomProperties(custom_properties);
  if (!custom.ok) return reject(index, item, custom.code, custom.reason);

  // Shallow merge, custom keys win: what Adobe's extension sends (§2). The same object as
  // `const { token, ...merged } = { ...properties, ...custom.properties }` (same keys, same order),
  // built without spreads, which were a visible cost of a one-event call in profiles; no
  // "__proto__" key is left in either (refused above), so plain stores copy every key.
  const merged: Record<string, unknown> = {};
  for (const source of [properties, custom.properties]) {
    for (const key of Object.keys(source)) if (key !== "token") setOwn(merged, key, source[key]);
  }
  const token = Object.hasOwn(custom.properties, "token") ? custom.properties.token : properties.token;
  // Before deriveInsertId hashes the content recursively (rows can build deep paths, too).
  const tooDeep = findTooDeep(merged, MAX_CONTAINER_DEPTH + 1, "properties");
  if (tooDeep !== undefined) {
    return reject(index, item, TOO_DEEP, `${tooDeep} nests lists or objects more than ${MAX_CONTAINER_DEPTH} levels deep`);
  }

  // The token travels in the body but is not auth; check it if configured, never forward it (§5).
  const expectedToken = ctx.config.adobe.project_token;
  if (expectedToken !== undefined && token !== expectedToken) {
    return reject(
      index,
      item,
      "token_mismatch",
      isMissing(token) ? "properties.token is missing; this stage expects its project token" : "properties.token is not this stage's project token",
    );
  }

  const identity = applyIdentityMode(event, merged, ctx.config.identity_mode);
  if (!identity.ok) return reject(index, item, identity.code, identity.reason);
  let finalProperties = identity.properties;
  if (!isIdentityEvent(event) && isMissing(finalProperties.distinct_id)) {
    // Adobe's extension lets the user leave Distinct ID empty and /track accepts that; send the
    // event user-less (`distinct_id: ""`, Mixpanel's convention, docs/vendors/mixpanel-api.md §4)
    // rather than reject it or let Mixpanel hash the Lambda's IP into one synthetic user.
    finalProperties = { ...finalProperties, distinct_id: "" };
  }

  if (isMissing(finalProperties.time)) {
    // Stamp the receive time once, at intake (§5); the envelope keeps it, so SQS redelivery and
    // forwarder retries send the same time and Mixpanel dedupes them. A resend by the sender does
    // NOT dedupe: it is stamped with a new time, and Mixpanel's dedup key is (event, distinct_id,
    // time, $insert_id) (mixpanel-api.md §5). Deriving the $insert_id *before* stamping still gives
    // a resend the same id; senders that resend must send `time` for Mixpanel to dedupe.
    const { time: _absent, ...content } = finalProperties;
    finalProperties = {
      ...content,
      ...(isMissing(content.$insert_id) ? { $insert_id: deriveInsertId({ event, properties: content }) } : {}),
      time: ctx.nowMs,
    };
  }

  const name = isIdentityEvent(event) ? event : renamed(event, ctx.config.event_mapping);
  const result = applyEventRules({ event: name, properties: finalProperties }, ctx.nowMs);
  if (!result.ok) return reject(index, item, result.code, result.reason);
  return { ok: true, index, kind: "event", line: result.line, insertId: result.insertId };
}
