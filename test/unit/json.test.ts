import * as z from "zod";
import { describe, expect, it } from "vitest";
import { parseJson, parseJsonOrThrow, parseJsonOrUndefined, parseJsonWith } from "../../lib/util/json.js";

describe("lib/util/json", () => {
  it("parseJson says why text is not JSON instead of throwing", () => {
    expect(parseJson('{"a":[1,"b"]}')).toEqual({ ok: true, value: { a: [1, "b"] } });
    const broken = parseJson("{not json");
    expect(broken.ok).toBe(false);
    expect(broken.ok ? "" : broken.error).toMatch(/JSON|property|token/i);
    expect(parseJsonOrUndefined("<html>")).toBeUndefined();
    expect(parseJsonOrUndefined("null")).toBeNull();
  });

  it("parseJsonWith checks the schema, and text that is not JSON fails it like a missing value", () => {
    const schema = z.object({ processId: z.number() });
    const good = parseJsonWith(schema, '{"processId":7,"extra":true}');
    expect(good.success && good.data).toEqual({ processId: 7 });
    expect(parseJsonWith(schema, '{"processId":"7"}').success).toBe(false);
    expect(parseJsonWith(schema, "").success).toBe(false);
    expect(parseJsonWith(schema.optional(), "not json")).toMatchObject({ success: true, data: undefined });
  });

  it("parseJsonOrThrow answers the value, or throws the caller's error with the parser's reason", () => {
    class StoredObjectError extends Error {}
    expect(parseJsonOrThrow('[1,{"a":null}]', () => new StoredObjectError("unused"))).toEqual([1, { a: null }]);
    expect(parseJsonOrThrow("null", () => new StoredObjectError("unused"))).toBeNull();
    let thrown: unknown;
    try {
      parseJsonOrThrow("{broken", (reason) => new StoredObjectError(`object is not JSON: ${reason}`));
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(StoredObjectError);
    expect((thrown as Error).message).toMatch(/^object is not JSON: .*(JSON|property|token)/i);
  });
});
