import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { stringifyAnyDepth, stringifyDeep } from "../../lib/util/deep-json.js";

describe("stringifyDeep", () => {
  it("writes exactly what JSON.stringify writes for parsed JSON", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(stringifyDeep(value)).toBe(JSON.stringify(value));
      }),
      { seed: 8, numRuns: 500 },
    );
    expect(stringifyDeep({ a: undefined, b: [undefined, 1], c: "\u2028\uD800😀", d: -0, e: Number.NaN })).toBe(
      JSON.stringify({ a: undefined, b: [undefined, 1], c: "\u2028\uD800😀", d: -0, e: Number.NaN }),
    );
  });

  it("writes values nested far deeper than JSON.stringify can", () => {
    const depth = 100_000;
    let value: unknown = { x: 1 };
    for (let i = 0; i < depth; i++) value = i % 2 === 0 ? [value] : { k: value };
    expect(() => JSON.stringify(value)).toThrow(RangeError);
    const text = stringifyDeep(value);
    expect(text.startsWith('{"k":[{"k":[')).toBe(true);
    // Parses back to the same shape: walk it without recursion and count the levels.
    let levels = 0;
    let current: unknown = JSON.parse(text);
    while (current !== null && typeof current === "object" && !("x" in current)) {
      current = Array.isArray(current) ? current[0] : (current as { k: unknown }).k;
      levels++;
    }
    expect(levels).toBe(depth);
    expect(current).toEqual({ x: 1 });
    expect(stringifyAnyDepth(value)).toBe(text);
    expect(stringifyAnyDepth({ shallow: [1, "a"] })).toBe('{"shallow":[1,"a"]}');
  });
});
