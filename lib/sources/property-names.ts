import type { RejectedItem } from "./types.js";

/**
 * `JSON.parse` turns a `"__proto__"` key into an ordinary own property, but almost every
 * later copy loses it or worse: zod's `z.record`/`z.object` parsing leaves it out, and a plain
 * `target[key] = value` sets the target's prototype instead. So an item carrying such a key
 * would be silently altered on its way to Mixpanel. Every source mapper refuses it up front,
 * per item, as `invalid_property_name`.
 */
export const INVALID_PROPERTY_NAME = "invalid_property_name";

const PROTO_KEY = "__proto__";

/**
 * The path (e.g. `properties.cart[0].__proto__`) of the first own `__proto__` key at any
 * depth of a parsed-JSON value, or undefined when there is none. `prefix` names where the
 * value sits in its item. Iterative, so a deeply nested body cannot overflow the stack.
 */
export function findProtoKey(value: unknown, prefix = ""): string | undefined {
  // Nearly every item has no such key: a scan without paths answers that cheaply (it showed in
  // CPU profiles), and only a hit pays for the walk that names where the key is.
  return hasProtoKey(value) ? findProtoKeyPath(value, prefix) : undefined;
}

function hasProtoKey(value: unknown): boolean {
  if (value === null || typeof value !== "object") return false;
  visitBudget = FAST_SCAN_MAX_VISITS;
  const fast = scanForProtoKey(value, 1);
  return fast ?? hasProtoKeyIteratively(value);
}

/**
 * The recursive scan without a stack of pending values or a set of seen ones (allocations that
 * made this check a visible cost per item in CPU profiles). It gives up (undefined) past a
 * depth that could strain the call stack, or past a number of visits that only shared references
 * (not parsed JSON) can reach, and the iterative walk below answers instead.
 */
const FAST_SCAN_MAX_DEPTH = 64;
const FAST_SCAN_MAX_VISITS = 100_000;
let visitBudget = 0;

function scanForProtoKey(value: object, depth: number): boolean | undefined {
  if (depth > FAST_SCAN_MAX_DEPTH || --visitBudget < 0) return undefined;
  if (Array.isArray(value)) {
    for (const inner of value) {
      if (inner === null || typeof inner !== "object") continue;
      const found = scanForProtoKey(inner, depth + 1);
      if (found !== false) return found;
    }
    return false;
  }
  if (Object.hasOwn(value, PROTO_KEY)) return true;
  for (const key in value) {
    const inner: unknown = Reflect.get(value, key);
    if (inner === null || typeof inner !== "object") continue;
    const found = scanForProtoKey(inner, depth + 1);
    if (found !== false) return found;
  }
  return false;
}

function hasProtoKeyIteratively(value: object): boolean {
  const pending: object[] = [value];
  const seen = new Set<object>();
  for (let current = pending.pop(); current !== undefined; current = pending.pop()) {
    if (seen.has(current)) continue;
    seen.add(current);
    if (Array.isArray(current)) {
      for (const inner of current) if (inner !== null && typeof inner === "object") pending.push(inner);
      continue;
    }
    if (Object.hasOwn(current, PROTO_KEY)) return true;
    const record = current as Record<string, unknown>;
    for (const key in record) {
      const inner = record[key];
      if (inner !== null && typeof inner === "object") pending.push(inner);
    }
  }
  return false;
}

function findProtoKeyPath(value: unknown, prefix: string): string | undefined {
  const pending: [unknown, string][] = [[value, prefix]];
  const seen = new WeakSet<object>();
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [current, path] = next;
    if (current === null || typeof current !== "object" || seen.has(current)) continue;
    seen.add(current);
    if (Array.isArray(current)) {
      current.forEach((inner, position) => pending.push([inner, `${path}[${position}]`]));
      continue;
    }
    if (Object.hasOwn(current, PROTO_KEY)) return path === "" ? PROTO_KEY : `${path}.${PROTO_KEY}`;
    for (const [key, inner] of Object.entries(current)) pending.push([inner, path === "" ? key : `${path}.${key}`]);
  }
  return undefined;
}

/** The reason shown to the sender for a `__proto__` key found at `path`. */
export function protoKeyReason(path: string): string {
  return `${path}: a property named "__proto__" cannot be relayed safely; rename it`;
}

/** A per-item rejection when the input item has an own `__proto__` key anywhere in it. */
export function rejectProtoKey(item: unknown, index: number): RejectedItem | undefined {
  const path = findProtoKey(item);
  return path === undefined ? undefined : { ok: false, index, code: INVALID_PROPERTY_NAME, reason: protoKeyReason(path), payload: item };
}
