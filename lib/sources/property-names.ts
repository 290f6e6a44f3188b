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
