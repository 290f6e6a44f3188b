import { MAX_CONTAINER_DEPTH } from "../mixpanel/event-rules.js";
import type { RejectedItem } from "./types.js";

/**
 * JSON.parse accepts lists and objects nested tens of thousands of levels deep, while
 * everything that later walks a value recursively (JSON.stringify, the insert-id hash) throws
 * RangeError past a few thousand levels. Every mapper runs this iterative check before any
 * recursion, so such an item is refused on its own (`too_deep`) and the rest of the batch goes on.
 */
export const TOO_DEEP = "too_deep";

/**
 * The path of the first list or object nested more than `maxDepth` containers deep inside
 * `value` (the value itself counts as one), or undefined. Iterative: never overflows the stack.
 */
export function findTooDeep(value: unknown, maxDepth: number, prefix = ""): string | undefined {
  const pending: [unknown, string, number][] = [[value, prefix, 1]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [current, path, depth] = next;
    if (current === null || typeof current !== "object") continue;
    if (depth > maxDepth) return path === "" ? "(item)" : path;
    if (Array.isArray(current)) {
      current.forEach((inner, position) => pending.push([inner, `${path}[${position}]`, depth + 1]));
      continue;
    }
    for (const [key, inner] of Object.entries(current)) pending.push([inner, path === "" ? key : `${path}.${key}`, depth + 1]);
  }
  return undefined;
}

/**
 * A per-item rejection when a property value of `item` (a value at `properties.<name>`, or an
 * operation's value) nests lists or objects deeper than Mixpanel's values can usefully hold.
 * `valueDepth` is how many containers sit between the item and its values (the item and
 * `properties` for an event: 2; the item and the operation object for an update: 2).
 */
export function rejectTooDeep(item: unknown, index: number, valueDepth: number): RejectedItem | undefined {
  const path = findTooDeep(item, MAX_CONTAINER_DEPTH + valueDepth);
  if (path === undefined) return undefined;
  return {
    ok: false,
    index,
    code: TOO_DEEP,
    reason: `${path} nests lists or objects more than ${MAX_CONTAINER_DEPTH} levels deep`,
    payload: item,
  };
}
