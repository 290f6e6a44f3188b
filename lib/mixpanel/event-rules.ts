import { hash } from "node:crypto";
import { setOwn } from "../util/renames.js";
import { canonicalJson, canonicalObjectJson } from "../util/json.js";

/**
 * Mixpanel's per-event rules (docs/vendors/mixpanel-api.md §4), applied at the edge
 * so a record that Mixpanel would refuse never reaches the queue. Pure: the clock
 * comes in as `nowMs`.
 */

export const MIN_EVENT_TIME_MS = Date.UTC(1971, 0, 1);
export const MAX_FUTURE_SKEW_MS = 60 * 60 * 1000;
/** "< 255 properties": the cap is 254. */
export const MAX_PROPERTIES = 254;
/** Objects < 255 keys, arrays < 255 items, nesting depth ≤ 3. */
export const MAX_NESTED_KEYS = 254;
export const MAX_ARRAY_ITEMS = 254;
export const MAX_NESTING_DEPTH = 3;
/**
 * Containers of any kind (arrays included) nested deeper than this are refused
 * before anything recurses over them, so hostile input like 100k nested arrays
 * cannot overflow the stack.
 */
export const MAX_CONTAINER_DEPTH = 16;
/** "< 1 MB per event"; measured on the serialized record. */
export const MAX_EVENT_BYTES = 1_000_000;
/** Values below this are seconds, above it milliseconds (docs/vendors/adobe-forwarding.md §5). */
const SECONDS_THRESHOLD = 1e11;

const BANNED_IDS = new Set([
  "00000000-0000-0000-0000-000000000000",
  "anon",
  "anonymous",
  "nil",
  "none",
  "null",
  "n/a",
  "na",
  "undefined",
  "unknown",
  "<nil>",
  "0",
  "-1",
  "true",
  "false",
  "[]",
  "{}",
]);

const INSERT_ID_PATTERN = /^[A-Za-z0-9-]{1,36}$/;

/** Case-insensitivity of Mixpanel's list is unverified; we refuse every casing to be safe. */
export function isBannedId(id: string): boolean {
  return BANNED_IDS.has(id.trim().toLowerCase());
}

export function isValidInsertId(id: string): boolean {
  return INSERT_ID_PATTERN.test(id) && !isBannedId(id);
}

function sha256Id(text: string): string {
  return hash("sha256", text, "hex").slice(0, 36);
}

/**
 * The fallback `$insert_id`: the first 36 hex characters of a SHA-256 over the
 * event's content, so a client that resends the same event gets the same id and
 * Mixpanel dedupes it.
 */
export function deriveInsertId(content: unknown): string {
  return sha256Id(canonicalJson(content));
}

/**
 * deriveInsertId({event, properties: {...properties without $insert_id, time, distinct_id}})
 * without building those objects: the same canonical text, so the same id.
 */
function deriveEventInsertId(event: string, properties: Record<string, unknown>, ownKeys: readonly string[], timeMs: number, distinctId: string): string {
  const hasTime = Object.hasOwn(properties, "time");
  const hasDistinctId = Object.hasOwn(properties, "distinct_id");
  const keys =
    hasTime && hasDistinctId ? ownKeys : [...ownKeys, ...(hasTime ? [] : ["time"]), ...(hasDistinctId ? [] : ["distinct_id"])];
  // $insert_id is left out of its own hash: canonicalObjectJson leaves out a key whose value is undefined.
  // (The value reader is an inline arrow, not a named const: one closure per event, nothing more.)
  return sha256Id(
    `{"event":${JSON.stringify(event)},"properties":${canonicalObjectJson(keys, (key) =>
      key === "time" ? timeMs : key === "distinct_id" ? distinctId : key === "$insert_id" ? undefined : properties[key],
    )}}`,
  );
}

export type TimeResult = { ok: true; ms: number } | { ok: false; reason: string };

/** Accepts seconds or milliseconds, as a number or a numeric string; answers integer ms. */
export function normalizeEventTime(value: unknown, nowMs: number): TimeResult {
  const numeric = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  if (typeof numeric !== "number" || !Number.isFinite(numeric)) {
    return { ok: false, reason: "time must be seconds or milliseconds since the epoch" };
  }
  const ms = Math.trunc(numeric < SECONDS_THRESHOLD ? numeric * 1000 : numeric);
  if (ms < MIN_EVENT_TIME_MS) return { ok: false, reason: "time is before 1971-01-01" };
  if (ms > nowMs + MAX_FUTURE_SKEW_MS) return { ok: false, reason: "time is more than 1 hour in the future" };
  return { ok: true, ms };
}

export interface RuleViolation {
  readonly code: string;
  readonly reason: string;
}

function checkNested(value: unknown, depth: number, path: string, containers = 1): RuleViolation | undefined {
  if (value === null || typeof value !== "object") return undefined;
  if (containers > MAX_CONTAINER_DEPTH) {
    return { code: "too_deep", reason: `${path} nests lists or objects more than ${MAX_CONTAINER_DEPTH} levels deep` };
  }
  if (Array.isArray(value)) {
    if (value.length > MAX_ARRAY_ITEMS) {
      return { code: "too_many_items", reason: `${path} has ${value.length} items (max ${MAX_ARRAY_ITEMS})` };
    }
    for (const item of value) {
      const violation = checkNested(item, depth, path, containers + 1);
      if (violation) return violation;
    }
    return undefined;
  }
  {
    if (depth > MAX_NESTING_DEPTH) {
      return { code: "too_deep", reason: `${path} nests objects deeper than ${MAX_NESTING_DEPTH} levels` };
    }
    const entries = Object.entries(value);
    if (entries.length > MAX_NESTED_KEYS) {
      return { code: "too_many_keys", reason: `${path} has ${entries.length} keys (max ${MAX_NESTED_KEYS})` };
    }
    for (const [key, inner] of entries) {
      const violation = checkNested(inner, depth + 1, `${path}.${key}`, containers + 1);
      if (violation) return violation;
    }
  }
  return undefined;
}

/** What one pass over the property values found: whether checkNested would refuse one, and any non-finite number. */
const ValueScan = { Clean: 0, NonFinite: 1, NestingViolation: 2 } as const;
type ValueScan = number;

/**
 * The answer of checkNested (violation or not) and of findNonFiniteNumber (a number or not) for
 * one property value, in one pass and without building a path string per entry: on the intake's
 * hot path the two path-building walks cost more than the rest of the checks (CPU profile of the intake).
 * Only a value this refuses is walked again by those two, for the reason's exact path.
 * Recursion stops past MAX_CONTAINER_DEPTH containers, so hostile nesting cannot overflow the stack.
 */
function scanValue(value: unknown, depth: number, containers: number): ValueScan {
  if (typeof value === "number") return Number.isFinite(value) ? ValueScan.Clean : ValueScan.NonFinite;
  if (value === null || typeof value !== "object") return ValueScan.Clean;
  if (containers > MAX_CONTAINER_DEPTH) return ValueScan.NestingViolation;
  let scan = ValueScan.Clean;
  if (Array.isArray(value)) {
    if (value.length > MAX_ARRAY_ITEMS) return ValueScan.NestingViolation;
    for (let i = 0; i < value.length; i++) {
      const inner = scanValue(value[i], depth, containers + 1);
      if (inner === ValueScan.NestingViolation) return inner;
      scan |= inner;
    }
    return scan;
  }
  if (depth > MAX_NESTING_DEPTH) return ValueScan.NestingViolation;
  const values: unknown[] = Object.values(value);
  if (values.length > MAX_NESTED_KEYS) return ValueScan.NestingViolation;
  for (const item of values) {
    const inner = scanValue(item, depth + 1, containers + 1);
    if (inner === ValueScan.NestingViolation) return inner;
    scan |= inner;
  }
  return scan;
}

/**
 * The path of the first number JSON cannot carry, or undefined. JSON.parse reads a literal
 * beyond a double's range (1e400) as ±Infinity, and JSON.stringify then writes null: the
 * sender's value would reach Mixpanel silently changed. Iterative, so depth is no concern.
 */
export function findNonFiniteNumber(value: unknown, prefix: string): string | undefined {
  const pending: [unknown, string][] = [[value, prefix]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [current, path] = next;
    if (typeof current === "number" && !Number.isFinite(current)) return path;
    if (current === null || typeof current !== "object") continue;
    if (Array.isArray(current)) current.forEach((inner, position) => pending.push([inner, `${path}[${position}]`]));
    else for (const [key, inner] of Object.entries(current)) pending.push([inner, `${path}.${key}`]);
  }
  return undefined;
}

export const INVALID_NUMBER = "invalid_number";

export function nonFiniteReason(path: string): string {
  return `${path} is a number beyond the range of a double (such as 1e400); it would be sent as null`;
}

export interface ImportEvent {
  readonly event: string;
  readonly properties: Record<string, unknown>;
}

/** `insertId` is the line's `properties.$insert_id`, handed on so the enqueue step can log its hash without re-reading the line. */
export type EventRuleResult = { ok: true; line: string; insertId: string } | ({ ok: false } & RuleViolation);

export interface EventRuleOptions {
  /** Add `ip: "0"` when the event has no ip, so Mixpanel does not geolocate it to the Lambda's region (§5). */
  readonly defaultIpZero: boolean;
}

/**
 * Validates an event against Mixpanel's documented rules and returns it
 * serialized for /import: `time` in integer ms, `distinct_id` a string,
 * `$insert_id` present and well-formed (derived from content when missing).
 */
/** 1 when `key` is not yet an own property of `object` (so setting it adds one), else 0. */
function countIfAbsent(object: Record<string, unknown>, key: string): number {
  return Object.hasOwn(object, key) ? 0 : 1;
}

export function applyEventRules(
  input: ImportEvent,
  nowMs: number,
  options: EventRuleOptions = { defaultIpZero: true },
): EventRuleResult {
  const { event, properties } = input;
  if (event.trim() === "") return { ok: false, code: "missing_event", reason: "event name is empty" };

  if (properties.time === undefined || properties.time === null) {
    return { ok: false, code: "missing_time", reason: "properties.time is required" };
  }
  const time = normalizeEventTime(properties.time, nowMs);
  if (!time.ok) return { ok: false, code: "invalid_time", reason: time.reason };

  const rawDistinctId = properties.distinct_id;
  if (rawDistinctId === undefined || rawDistinctId === null) {
    // Without it Mixpanel hashes the request IP: every event would become one synthetic user.
    return { ok: false, code: "missing_distinct_id", reason: "properties.distinct_id is required (use \"\" for user-less events)" };
  }
  if (typeof rawDistinctId !== "string" && typeof rawDistinctId !== "number") {
    return { ok: false, code: "invalid_distinct_id", reason: "properties.distinct_id must be a string or a number" };
  }
  if (typeof rawDistinctId === "number" && Number.isInteger(rawDistinctId) && !Number.isSafeInteger(rawDistinctId)) {
    // JSON numbers above 2^53 were already rounded by JSON.parse: String() would name another user.
    return { ok: false, code: "invalid_distinct_id", reason: "numeric distinct_id is beyond 2^53 and lost precision; send it as a string" };
  }
  const distinctId = String(rawDistinctId);
  if (distinctId !== "" && isBannedId(distinctId)) {
    return { ok: false, code: "banned_distinct_id", reason: `distinct_id "${distinctId}" is a placeholder Mixpanel refuses` };
  }

  // Before anything recurses over the values (the insert id hash does).
  const keys = Object.keys(properties);
  let scan = ValueScan.Clean;
  for (const key of keys) {
    scan |= scanValue(properties[key], 1, 1);
    if (scan & ValueScan.NestingViolation) break;
  }
  if (scan & ValueScan.NestingViolation) {
    for (const key of keys) {
      const value = properties[key];
      if (value === null || typeof value !== "object") continue;
      const violation = checkNested(value, 1, `properties.${key}`);
      if (violation) return { ok: false, ...violation };
    }
  }
  if (scan !== ValueScan.Clean) {
    const nonFinite = findNonFiniteNumber(properties, "properties");
    if (nonFinite !== undefined) return { ok: false, code: INVALID_NUMBER, reason: nonFiniteReason(nonFinite) };
  }

  const rawInsertId = properties.$insert_id;
  let insertId: string;
  if (rawInsertId === undefined || rawInsertId === null || rawInsertId === "") {
    insertId = deriveEventInsertId(event, properties, keys, time.ms, distinctId);
  } else if (typeof rawInsertId === "string" && isValidInsertId(rawInsertId)) {
    insertId = rawInsertId;
  } else {
    // Keep the sender's dedup intent: the same bad id always maps to the same valid one.
    insertId = deriveInsertId({ insert_id: rawInsertId });
  }

  // The same object as `{...properties, time, distinct_id, $insert_id}` (same keys, same order),
  // built by Object.assign and plain stores: measured here, spreading a parsed-JSON object and then
  // adding keys to the copy cost twice as much, and was the intake's largest single cost in
  // its CPU profile. Object.assign would set the copy's prototype from an own "__proto__" key, so an
  // object with one is copied key by key as an own property instead.
  let normalized: Record<string, unknown>;
  if (Object.hasOwn(properties, "__proto__")) {
    normalized = {};
    for (const key of keys) setOwn(normalized, key, properties[key]);
  } else normalized = Object.assign({}, properties);
  let propertyCount = keys.length + countIfAbsent(normalized, "time") + countIfAbsent(normalized, "distinct_id") + countIfAbsent(normalized, "$insert_id");
  normalized.time = time.ms;
  normalized.distinct_id = distinctId;
  normalized.$insert_id = insertId;
  if (options.defaultIpZero && normalized.ip === undefined) {
    propertyCount += countIfAbsent(normalized, "ip");
    normalized.ip = "0";
  }

  if (propertyCount > MAX_PROPERTIES) {
    return { ok: false, code: "too_many_properties", reason: `event has ${propertyCount} properties (max ${MAX_PROPERTIES})` };
  }

  const line = JSON.stringify({ event, properties: normalized });
  // UTF-8 takes at most 3 bytes per UTF-16 unit: only long lines need counting.
  const bytes = line.length * 3 < MAX_EVENT_BYTES ? line.length : Buffer.byteLength(line);
  if (bytes >= MAX_EVENT_BYTES) {
    return { ok: false, code: "event_too_large", reason: `event is ${bytes} bytes (must be under ${MAX_EVENT_BYTES})` };
  }
  return { ok: true, line, insertId };
}
