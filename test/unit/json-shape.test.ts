import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { jsonShapeRefusal } from "../../lib/util/json.js";

/** Nesting depth of a parsed value: a scalar is 0, `[]` is 1. */
function depthOf(value: unknown): number {
  if (Array.isArray(value)) return 1 + Math.max(0, ...value.map(depthOf));
  if (value !== null && typeof value === "object") return 1 + Math.max(0, ...Object.values(value).map(depthOf));
  return 0;
}

const WIDE = { maxContainers: 1e9, maxValues: 1e9 };

describe("jsonShapeRefusal", () => {
  it("measures nesting as JSON.parse builds it, whatever the strings hold (quotes, backslashes, brackets)", () => {
    const trickyString = fc.stringMatching(/^[\\"[\]{},a]{0,12}$/);
    const value = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: "small" }, trickyString, fc.integer(), fc.array(tie("node"), { maxLength: 4 }), fc.dictionary(trickyString, tie("node"), { maxKeys: 3 })),
    })).node;
    fc.assert(
      fc.property(value, fc.integer({ min: 0, max: 8 }), (parsed, maxDepth) => {
        const text = JSON.stringify(parsed);
        const refusal = jsonShapeRefusal(text, { maxDepth, ...WIDE });
        expect(refusal?.code === "too_deep").toBe(depthOf(JSON.parse(text)) > maxDepth);
      }),
      { seed: 20261206, numRuns: 2000 },
    );
  });

  it("treats a quote after an even run of backslashes as the string's end", () => {
    expect(jsonShapeRefusal('["\\\\", [[1]]]', { maxDepth: 2, ...WIDE })?.code).toBe("too_deep");
    expect(jsonShapeRefusal('["\\\\\\" [[[["]', { maxDepth: 1, ...WIDE })).toBeUndefined();
  });
});
