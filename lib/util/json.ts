import type * as z from "./zod.js";

/**
 * The one place text becomes JSON values: every untrusted body (a sender's request, a vendor's
 * answer, a queue message, an S3 object, a secret) goes through these instead of a hand-written
 * try/JSON.parse, so "not JSON" is handled the same way everywhere.
 */
export type JsonText = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: string };

/** JSON.parse as a result: `error` is the parser's message, for answers that say why. */
export function parseJson(text: string): JsonText {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, error: parserMessage(error) };
  }
}

/**
 * JSON.parse that throws `failure(the parser's message)` for text that is not JSON: for text
 * whose error class decides what happens next (a stored object, a queue message), so each
 * reader names its own typed error (lib/util/errors.ts) in one line. Builds no result object.
 */
export function parseJsonOrThrow(text: string, failure: (parserMessage: string) => Error): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw failure(parserMessage(error));
  }
}

function parserMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The deepest nesting of lists and objects a request body may have. Mixpanel keeps three
 * levels of object nesting in a property value (docs/vendors/mixpanel-wire.md §7), and a batch
 * adds a few levels around its records; anything deeper is refused before JSON.parse builds
 * it, so a small body nested millions deep never becomes a tree millions of nodes deep.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * How many lists, objects and values a request body may hold. Wide is as costly as deep: 10 MB
 * of `[{},{},…]` parses into 3.3 million objects (~300 MB of heap). Mixpanel takes 2000 records a
 * request with fewer than 255 properties each (docs/vendors/mixpanel-wire.md §7), so a real body
 * stays far below these; they keep one parse to a few tens of MB.
 */
export const MAX_JSON_CONTAINERS = 200_000;
export const MAX_JSON_VALUES = 1_000_000;

export interface JsonShapeLimits {
  readonly maxDepth: number;
  readonly maxContainers: number;
  readonly maxValues: number;
}
export const BODY_SHAPE_LIMITS: JsonShapeLimits = { maxDepth: MAX_JSON_DEPTH, maxContainers: MAX_JSON_CONTAINERS, maxValues: MAX_JSON_VALUES };

export type JsonShapeRefusal = { readonly code: "too_deep" | "too_many_values"; readonly error: string };

export type BoundedJsonText = JsonText | ({ readonly ok: false } & JsonShapeRefusal);

/**
 * Why `text` is refused before parsing (nesting past `maxDepth`, more lists and objects than
 * `maxContainers`, more values than `maxValues`), or undefined. A scan over the characters that
 * knows strings and escapes, so `"[[["` inside a string is not nesting; it builds nothing and
 * stops at the first limit passed. Values are counted by their separators, which is exact for
 * valid JSON and an upper bound's worth for anything else (JSON.parse refuses that anyway).
 */
export function jsonShapeRefusal(text: string, limits: JsonShapeLimits): JsonShapeRefusal | undefined {
  let depth = 0;
  let containers = 0;
  let values = 1;
  for (let offset = 0; offset < text.length; offset++) {
    const code = text.charCodeAt(offset);
    if (code === 0x22) {
      offset = closingQuote(text, offset);
    } else if (code === 0x5b || code === 0x7b) {
      if (++depth > limits.maxDepth) {
        return { code: "too_deep", error: `lists and objects nest more than ${limits.maxDepth} levels deep (at character ${offset})` };
      }
      if (++containers > limits.maxContainers) {
        return { code: "too_many_values", error: `more than ${limits.maxContainers} lists and objects (at character ${offset})` };
      }
    } else if ((code === 0x5d || code === 0x7d) && depth > 0) {
      depth--;
    } else if (code === 0x2c && ++values > limits.maxValues) {
      return { code: "too_many_values", error: `more than ${limits.maxValues} values (at character ${offset})` };
    }
  }
  return undefined;
}

/**
 * The offset of the quote that closes the string opened at `open` (text.length when none does).
 * indexOf skips a string's characters natively; a quote preceded by an odd run of backslashes is
 * escaped and the search goes on past it.
 */
function closingQuote(text: string, open: number): number {
  let quote = text.indexOf('"', open + 1);
  while (quote !== -1) {
    let backslashes = 0;
    while (text.charCodeAt(quote - 1 - backslashes) === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return quote;
    quote = text.indexOf('"', quote + 1);
  }
  return text.length;
}

/**
 * parseJson for untrusted bodies, refused past the shape limits. Width is what costs memory, so
 * it is settled before JSON.parse builds anything: a container takes at least two characters and
 * a value one plus its separator, so a body short enough cannot pass `maxContainers` or
 * `maxValues` at all; a longer one is bounded by counting its `{`/`[` and `,` characters (strings
 * included, so an upper bound), and only a body that bound does not clear gets the exact scan
 * (jsonShapeRefusal). Depth is then checked on the parsed value: V8's JSON.parse is iterative, so
 * deep nesting costs it nothing but the (already bounded) containers, and the walk stops at
 * `maxDepth`, so nothing recursive downstream ever sees a deeper value. Walking the parsed value
 * costs a fraction of scanning the text (measured per intake request shape, docs/performance.md).
 */
export function parseJsonBounded(text: string, limits: JsonShapeLimits = BODY_SHAPE_LIMITS): BoundedJsonText {
  if (!widthBoundedByCounts(text, limits)) {
    const refusal = jsonShapeRefusal(text, limits);
    // The exact scan has checked the depth too.
    return refusal ? { ok: false, ...refusal } : parseJson(text);
  }
  const parsed = parseJson(text);
  if (parsed.ok && nestsDeeperThan(parsed.value, limits.maxDepth)) {
    return { ok: false, code: "too_deep", error: `lists and objects nest more than ${limits.maxDepth} levels deep` };
  }
  return parsed;
}

/** True when `text` cannot hold more lists, objects or values than `limits` allow, by length or by character counts. */
function widthBoundedByCounts(text: string, limits: JsonShapeLimits): boolean {
  const containersBounded =
    text.length <= 2 * limits.maxContainers || countChars(text, "{", limits.maxContainers) + countChars(text, "[", limits.maxContainers) <= limits.maxContainers;
  return containersBounded && (text.length < 2 * limits.maxValues || countChars(text, ",", limits.maxValues) < limits.maxValues);
}

/** How many times `char` occurs in `text`, counting stopped once past `stopAfter`. */
function countChars(text: string, char: string, stopAfter: number): number {
  let found = 0;
  for (let at = text.indexOf(char); at !== -1 && found <= stopAfter; at = text.indexOf(char, at + 1)) found++;
  return found;
}

/** True when a list or object inside `value` sits more than `maxDepth` levels deep (`[]` is one level). */
function nestsDeeperThan(value: unknown, maxDepth: number): boolean {
  return value !== null && typeof value === "object" && containerDeeperThan(value, 1, maxDepth);
}

function containerDeeperThan(container: object, depth: number, maxDepth: number): boolean {
  if (depth > maxDepth) return true;
  if (Array.isArray(container)) {
    for (let i = 0; i < container.length; i++) {
      const inner: unknown = container[i];
      if (inner !== null && typeof inner === "object" && containerDeeperThan(inner, depth + 1, maxDepth)) return true;
    }
    return false;
  }
  for (const key in container) {
    const inner: unknown = (container as Record<string, unknown>)[key];
    if (inner !== null && typeof inner === "object" && containerDeeperThan(inner, depth + 1, maxDepth)) return true;
  }
  return false;
}

/**
 * JSON.parse that answers undefined for text that is not JSON (vendor bodies are not trusted).
 * JSON text never parses to undefined, so `=== undefined` means "not JSON". Builds no result
 * object: readers call it once per stored member.
 */
export function parseJsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Text checked against a schema in one step; text that is not JSON is checked as `undefined`,
 * so it fails every schema that does not accept a missing value.
 */
export function parseJsonWith<T>(schema: z.ZodType<T>, text: string): z.ZodSafeParseResult<T> {
  return schema.safeParse(parseJsonOrUndefined(text));
}

/**
 * JSON with object keys sorted, so equal content always hashes the same. Built by string
 * appends without intermediate entry arrays: it is on the intake's hot path (as CPU
 * profiles show), and its output must stay byte-identical so insert ids survive a deploy.
 */
export function canonicalJson(value: unknown): string {
  const sorted = sortedCopy(value);
  return sorted === UNSORTABLE ? canonicalJsonByHand(value) : (JSON.stringify(sorted) ?? "null");
}

const UNSORTABLE = Symbol("unsortable");
/** Keys JavaScript objects keep in numeric order, whatever the insertion order. */
const INDEX_LIKE_KEY = /^(?:0|[1-9]\d*)$/;

/**
 * A copy of a JSON-shaped value with every object's keys inserted in sorted order, so that
 * the native JSON.stringify writes the canonical text (several times faster than building
 * it by hand). Anything where insertion order would not be output order, or where
 * JSON.stringify would differ from canonicalJsonByHand (index-like or "__proto__" keys,
 * functions, symbols, non-plain objects), answers UNSORTABLE and takes the slow path.
 */
function sortedCopy(value: unknown): unknown {
  if (value === null) return null;
  switch (typeof value) {
    case "string":
    case "number":
    case "boolean":
    case "undefined":
      return value;
    case "object":
      break;
    default:
      return UNSORTABLE;
  }
  if (Array.isArray(value)) {
    const copy = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) {
      const inner = sortedCopy(value[i]);
      if (inner === UNSORTABLE) return UNSORTABLE;
      copy[i] = inner;
    }
    return copy;
  }
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) return UNSORTABLE;
  return sortedObject(Object.keys(value), (key) => (value as Record<string, unknown>)[key]);
}

function sortedObject(keys: string[], valueOf: (key: string) => unknown): Record<string, unknown> | typeof UNSORTABLE {
  keys.sort();
  const copy: Record<string, unknown> = {};
  for (const key of keys) {
    if (key === "__proto__" || INDEX_LIKE_KEY.test(key)) return UNSORTABLE;
    const inner = sortedCopy(valueOf(key));
    if (inner === UNSORTABLE) return UNSORTABLE;
    copy[key] = inner;
  }
  return copy;
}

/** The canonical text built by hand: the reference, and the path for values sortedCopy refuses. */
function canonicalJsonByHand(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) {
    let out = "[";
    for (let i = 0; i < value.length; i++) out += (i > 0 ? "," : "") + canonicalJsonByHand(value[i]);
    return `${out}]`;
  }
  return canonicalObject(Object.keys(value), (key) => (value as Record<string, unknown>)[key]);
}

/** `{...}` of `keys` (sorted here by UTF-16 code units, like `<`), undefined values left out. */
function canonicalObject(keys: string[], valueOf: (key: string) => unknown): string {
  keys.sort();
  let out = "{";
  for (const key of keys) {
    const inner = valueOf(key);
    if (inner === undefined) continue;
    out += `${out.length > 1 ? "," : ""}${JSON.stringify(key)}:${canonicalJsonByHand(inner)}`;
  }
  return `${out}}`;
}

/**
 * The canonical text of an object given by its keys and a lookup (so a caller can add or
 * override fields without building a new object): the same text canonicalJson gives for it.
 * A key whose value is undefined is left out, as JSON.stringify leaves it out.
 *
 * This is canonicalObject's algorithm (the reference) with each top-level value written
 * directly: on the intake's hot path (the insert-id hash of every event, as CPU profiles show)
 * building a sorted copy for JSON.stringify cost more than writing `"key":value` pairs,
 * most values being strings, numbers or lists of them, and keys repeating from event to event.
 */
export function canonicalObjectJson(keys: readonly string[], valueOf: (key: string) => unknown): string {
  const sorted = sortedKeys(keys);
  let out = "{";
  let separator = "";
  for (const key of sorted) {
    const inner = valueOf(key);
    if (inner === undefined) continue;
    out += `${separator}${keyPrefix(key)}${canonicalValueJson(inner)}`;
    separator = ",";
  }
  return `${out}}`;
}

/** `keys` sorted (a new array); the last answer is reused, since events from one sender repeat their keys in the same order. */
let lastKeys: readonly string[] = [];
let lastSorted: readonly string[] = [];

function sortedKeys(keys: readonly string[]): readonly string[] {
  if (keys.length === lastKeys.length && keys.every((key, index) => key === lastKeys[index])) return lastSorted;
  lastKeys = [...keys];
  lastSorted = [...keys].sort();
  return lastSorted;
}

/** `"key":` for keys seen before; bounded so hostile keys cannot grow it without limit. */
const KEY_PREFIXES = new Map<string, string>();
const KEY_PREFIX_CACHE_ENTRIES = 4096;
const KEY_PREFIX_CACHE_KEY_LENGTH = 128;

function keyPrefix(key: string): string {
  const cached = KEY_PREFIXES.get(key);
  if (cached !== undefined) return cached;
  const prefix = `${JSON.stringify(key)}:`;
  if (KEY_PREFIXES.size < KEY_PREFIX_CACHE_ENTRIES && key.length <= KEY_PREFIX_CACHE_KEY_LENGTH) KEY_PREFIXES.set(key, prefix);
  return prefix;
}

/** canonicalJsonByHand(value) for a value that is not undefined, without a detour for the common kinds. */
function canonicalValueJson(value: unknown): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "number":
      // Number-to-string is JSON's own number format for finite numbers; JSON writes the others as null.
      return Number.isFinite(value) ? String(value) : "null";
    case "boolean":
      return value ? "true" : "false";
    case "object":
      if (value === null) return "null";
      // A list of strings, numbers, booleans and nulls has no keys to sort: its JSON is canonical.
      if (Array.isArray(value) && isFlatList(value)) return JSON.stringify(value);
      return canonicalJson(value);
    default:
      return canonicalJson(value);
  }
}

function isFlatList(list: readonly unknown[]): boolean {
  for (const item of list) if (item !== null && typeof item === "object") return false;
  return true;
}
