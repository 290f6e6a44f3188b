/**
 * JSON.stringify for values of any nesting depth. JSON.parse accepts input nested tens of
 * thousands of levels deep, but JSON.stringify recurses and throws RangeError past a few
 * thousand; this walks with an explicit stack instead, so such input can still be stored as
 * received (the rejected store keeps a too-deep item's payload for the operator). Same output as
 * JSON.stringify for parsed JSON (no toJSON, no replacer, no cycles).
 */
type Frame = { readonly items: readonly unknown[]; next: number } | { readonly entries: readonly [string, unknown][]; next: number };

function isSkipped(value: unknown): boolean {
  return value === undefined || typeof value === "function" || typeof value === "symbol";
}

export function stringifyDeep(value: unknown): string {
  const out: string[] = [];
  const stack: Frame[] = [];
  const open = (current: unknown): void => {
    if (current === null || typeof current !== "object") {
      out.push(isSkipped(current) ? "null" : (JSON.stringify(current) ?? "null"));
    } else if (Array.isArray(current)) {
      out.push("[");
      stack.push({ items: current, next: 0 });
    } else {
      out.push("{");
      stack.push({ entries: Object.entries(current).filter(([, inner]) => !isSkipped(inner)), next: 0 });
    }
  };
  open(value);
  for (let top = stack.at(-1); top !== undefined; top = stack.at(-1)) {
    if ("items" in top) {
      if (top.next >= top.items.length) {
        out.push("]");
        stack.pop();
        continue;
      }
      if (top.next > 0) out.push(",");
      const item = top.items[top.next++];
      open(isSkipped(item) ? null : item);
    } else {
      if (top.next >= top.entries.length) {
        out.push("}");
        stack.pop();
        continue;
      }
      if (top.next > 0) out.push(",");
      const [key, inner] = top.entries[top.next++] ?? ["", null];
      out.push(JSON.stringify(key), ":");
      open(inner);
    }
  }
  return out.join("");
}

/** JSON.stringify when it can (fast, native), stringifyDeep when the value nests too deeply for it. */
export function stringifyAnyDepth(value: unknown): string {
  try {
    return JSON.stringify(value) ?? "null";
  } catch (error) {
    if (error instanceof RangeError) return stringifyDeep(value);
    throw error;
  }
}

/**
 * JSON.stringify's text of `value`, cut once it reaches `maxChars`: the whole text with
 * `complete: true` when it fits, else its first `maxChars` characters. Walks without recursion
 * and stops writing at the cap, so a value of any size or depth costs at most about `maxChars`.
 */
export function stringifyBounded(value: unknown, maxChars: number): { readonly text: string; readonly complete: boolean } {
  if (value === null || typeof value !== "object") {
    const text = isSkipped(value) ? "null" : (JSON.stringify(value) ?? "null");
    return text.length <= maxChars ? { text, complete: true } : { text: text.slice(0, maxChars), complete: false };
  }
  const out: string[] = [];
  let length = 0;
  const write = (piece: string): boolean => {
    out.push(piece);
    length += piece.length;
    return length <= maxChars;
  };
  const stack: Frame[] = [];
  const open = (current: unknown): boolean => {
    if (current === null || typeof current !== "object") return write(isSkipped(current) ? "null" : (JSON.stringify(current) ?? "null"));
    if (Array.isArray(current)) {
      stack.push({ items: current, next: 0 });
      return write("[");
    }
    const entries: [string, unknown][] = [];
    for (const key in current) {
      if (!Object.hasOwn(current, key)) continue;
      const inner = (current as Record<string, unknown>)[key];
      if (!isSkipped(inner)) entries.push([key, inner]);
    }
    stack.push({ entries, next: 0 });
    return write("{");
  };
  let fits = open(value);
  for (let top = stack.at(-1); fits && top !== undefined; top = stack.at(-1)) {
    if ("items" in top) {
      if (top.next >= top.items.length) {
        fits = write("]");
        stack.pop();
        continue;
      }
      if (top.next > 0 && !write(",")) break;
      const item = top.items[top.next++];
      fits = open(isSkipped(item) ? null : item);
    } else {
      if (top.next >= top.entries.length) {
        fits = write("}");
        stack.pop();
        continue;
      }
      if (top.next > 0 && !write(",")) break;
      const [key, inner] = top.entries[top.next++] ?? ["", null];
      fits = write(`${JSON.stringify(key)}:`) && open(inner);
    }
  }
  const text = out.join("");
  return fits && stack.length === 0 ? { text, complete: true } : { text: text.slice(0, maxChars), complete: false };
}
