import { describe, expect, it } from "vitest";
import { findProtoKey, rejectProtoKey } from "../../../lib/sources/property-names.js";

describe("findProtoKey", () => {
  it("finds an own __proto__ key from JSON.parse at any depth and names its path", () => {
    expect(findProtoKey(JSON.parse('{"__proto__":1}'))).toBe("__proto__");
    expect(findProtoKey(JSON.parse('{"a":{"b":[0,{"__proto__":null}]}}'))).toBe("a.b[1].__proto__");
    expect(findProtoKey(JSON.parse('[[{"__proto__":{}}]]'), "custom_properties")).toBe("custom_properties[0][0].__proto__");
  });

  it("ignores the inherited accessor, __proto__ as a value, and look-alike keys", () => {
    expect(findProtoKey({ a: { b: [1, "x", null] } })).toBeUndefined();
    expect(findProtoKey(JSON.parse('{"name":"__proto__","list":["__proto__"],"__proto":1,"constructor":"c"}'))).toBeUndefined();
    expect(findProtoKey("__proto__")).toBeUndefined();
  });

  it("walks a deeply nested body without overflowing the stack", () => {
    const depth = 200_000;
    const text = `${"[".repeat(depth)}{"__proto__":1}${"]".repeat(depth)}`;
    expect(findProtoKey(JSON.parse(text))?.endsWith("[0].__proto__")).toBe(true);
  });

  it("answers at once for values sharing references (not parsed JSON), where a plain recursion would take 2^40 steps", () => {
    const build = (bottom: unknown) => {
      let level: unknown = bottom;
      for (let i = 0; i < 40; i++) level = { left: level, right: [level] };
      return level;
    };
    // A plain recursion would not finish within the test's timeout.
    expect(findProtoKey(build({ fine: true }))).toBeUndefined();
    expect(findProtoKey(build(JSON.parse('{"__proto__":1}')))).toMatch(/__proto__$/);
  });

  it("makes a per-item rejection carrying the item as received", () => {
    const item: unknown = JSON.parse('{"properties":{"__proto__":{"x":1}}}');
    expect(rejectProtoKey(item, 4)).toEqual({
      ok: false,
      index: 4,
      code: "invalid_property_name",
      reason: 'properties.__proto__: a property named "__proto__" cannot be relayed safely; rename it',
      payload: item,
    });
    expect(rejectProtoKey({ properties: {} }, 0)).toBeUndefined();
  });
});
