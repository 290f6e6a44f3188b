import { describe, expect, it } from "vitest";
import { groupByCaps } from "../../lib/util/batching.js";
import { parseJsonOrUndefined } from "../../lib/util/json.js";

describe("groupByCaps", () => {
  it("keeps order and respects the count and byte caps independently", () => {
    const sizes = [4, 4, 4, 9, 1, 1, 1, 1];
    const groups = groupByCaps(sizes, (size) => size, 3, 10);
    expect(groups).toEqual([[4, 4], [4], [9, 1], [1, 1, 1]]);
    for (const group of groups) {
      expect(group.length).toBeLessThanOrEqual(3);
      expect(group.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(10);
    }
  });

  it("gives an item over the byte cap a group of its own", () => {
    expect(groupByCaps([2, 50, 2], (size) => size, 10, 10)).toEqual([[2], [50], [2]]);
    expect(groupByCaps([], (size: number) => size, 10, 10)).toEqual([]);
  });
});

describe("parseJsonOrUndefined", () => {
  it("parses JSON and answers undefined for anything else", () => {
    expect(parseJsonOrUndefined('{"a":1}')).toEqual({ a: 1 });
    expect(parseJsonOrUndefined("<html>")).toBeUndefined();
  });
});
