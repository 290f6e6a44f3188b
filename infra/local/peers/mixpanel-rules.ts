/**
 * Mixpanel's published per-event rules for `/import?strict=1`, written out for the local
 * sandbox from Mixpanel's documentation alone (docs/vendors/mixpanel-api.md §3–§4:
 * https://docs.mixpanel.com/reference/import-events,
 * https://docs.mixpanel.com/docs/data-structure/property-reference/data-type). It shares no
 * code with the relay: a mistake in the relay's own rules must show up here as a refusal, not
 * pass because both sides read it the same way.
 *
 * The answer names the field the way Mixpanel's `failed_records` do (`properties.time`, …).
 */
export interface ImportRefusal {
  readonly field: string;
  readonly message: string;
}

/** 1971-01-01T00:00:00Z: earlier times are refused. */
const EARLIEST_MS = 31_536_000_000;
/** Times more than an hour ahead of Mixpanel's clock are refused. */
const FUTURE_LIMIT_MS = 3_600_000;
/** Above this a number is taken as milliseconds, below it as seconds (10^10 s is the year 2286). */
const MILLISECONDS_FROM = 10_000_000_000;
/** "fewer than 255 properties", "objects with fewer than 255 keys", "lists of fewer than 255 items". */
const FEWER_THAN = 255;
/** Object properties nest at most 3 levels. */
const OBJECT_LEVELS = 3;
/** "Each event must be smaller than 1 MB" (read as 10^6 bytes of JSON, the stricter reading). */
const EVENT_BYTES_BELOW = 1_000_000;
/** `$insert_id`: at most 36 characters of letters, digits and dashes. */
const INSERT_ID = /^[A-Za-z0-9-]{1,36}$/;
/**
 * Placeholder ids Mixpanel refuses as `distinct_id` / `$insert_id`. Whether the list is matched
 * without regard to case is not published; the sandbox refuses every casing (the stricter reading).
 */
const PLACEHOLDER_IDS = [
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
];

type JsonObject = Record<string, unknown>;

function isPlainObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isPlaceholder(id: string): boolean {
  const folded = id.trim().toLowerCase();
  return PLACEHOLDER_IDS.includes(folded);
}

const refusal = (field: string, problem: string): ImportRefusal => ({ field, message: `'${field}' is invalid: ${problem}` });

/**
 * Walks a property value without recursion (a hostile value may nest 100 000 levels): objects
 * count levels and keys, lists count items.
 */
function shapeProblem(name: string, value: unknown): ImportRefusal | undefined {
  const stack: { value: unknown; level: number; path: string }[] = [{ value, level: 0, path: `properties.${name}` }];
  let visited = 0;
  while (stack.length > 0) {
    const next = stack.pop();
    if (!next) break;
    visited += 1;
    if (visited > 2_000_000) return refusal(`properties.${name}`, "value too large");
    const { value: item, level, path } = next;
    if (Array.isArray(item)) {
      if (item.length >= FEWER_THAN) return refusal(path, `a list must have fewer than ${FEWER_THAN} items`);
      for (const inner of item) stack.push({ value: inner, level, path });
    } else if (isPlainObject(item)) {
      const depth = level + 1;
      if (depth > OBJECT_LEVELS) return refusal(path, `objects nest at most ${OBJECT_LEVELS} levels`);
      const entries = Object.entries(item);
      if (entries.length >= FEWER_THAN) return refusal(path, `an object must have fewer than ${FEWER_THAN} keys`);
      for (const [key, inner] of entries) stack.push({ value: inner, level: depth, path: `${path}.${key}` });
    }
  }
  return undefined;
}

/** undefined when Mixpanel would ingest the event; else the refusal as `failed_records` reports it. */
export function importEventRefusal(candidate: unknown, nowMs: number): ImportRefusal | undefined {
  if (!isPlainObject(candidate)) return { field: "event", message: "each event must be an object {event, properties}" };
  if (typeof candidate.event !== "string" || candidate.event === "") return refusal("event", "the event name must be a non-empty string");
  const properties = candidate.properties;
  if (!isPlainObject(properties)) return refusal("properties", "properties must be an object");

  const time = properties.time;
  if (time === undefined) return { field: "properties.time", message: "'properties.time' is required" };
  if (typeof time !== "number" || !Number.isFinite(time)) return refusal("properties.time", "must be a number of seconds or milliseconds since the epoch");
  const timeMs = time >= MILLISECONDS_FROM ? time : time * 1000;
  if (timeMs < EARLIEST_MS) return refusal("properties.time", "before 1971-01-01");
  if (timeMs > nowMs + FUTURE_LIMIT_MS) return refusal("properties.time", "more than 1 hour in the future");

  const distinctId = properties.distinct_id;
  if (distinctId === undefined) return { field: "properties.distinct_id", message: "'properties.distinct_id' is required (\"\" for events without a user)" };
  if (typeof distinctId !== "string" && typeof distinctId !== "number") return refusal("properties.distinct_id", "must be a string");
  if (typeof distinctId === "string" && distinctId !== "" && isPlaceholder(distinctId)) return refusal("properties.distinct_id", `"${distinctId}" is a placeholder id`);
  if (typeof distinctId === "number" && isPlaceholder(String(distinctId))) return refusal("properties.distinct_id", `${distinctId} is a placeholder id`);

  const insertId = properties.$insert_id;
  if (insertId === undefined) return { field: "properties.$insert_id", message: "'properties.$insert_id' is required with strict=1" };
  if (typeof insertId !== "string" || !INSERT_ID.test(insertId)) return refusal("properties.$insert_id", "at most 36 letters, digits or dashes");
  if (isPlaceholder(insertId)) return refusal("properties.$insert_id", `"${insertId}" is a placeholder id`);

  const names = Object.keys(properties);
  if (names.length >= FEWER_THAN) return refusal("properties", `an event must have fewer than ${FEWER_THAN} properties (has ${names.length})`);
  for (const name of names) {
    const problem = shapeProblem(name, properties[name]);
    if (problem) return problem;
  }
  let bytes: number;
  try {
    bytes = Buffer.byteLength(JSON.stringify(candidate));
  } catch {
    // Lists nested past what a JSON writer can walk: no published rule, but no server reads it either.
    return refusal("event", "nested too deeply to be read");
  }
  if (bytes >= EVENT_BYTES_BELOW) return refusal("event", `an event must be smaller than 1 MB (is ${bytes} bytes)`);
  return undefined;
}
