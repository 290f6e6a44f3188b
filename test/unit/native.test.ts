import { describe, expect, it } from "vitest";
import { parseStageConfig } from "../../lib/config/stage.js";
import { ValidationError } from "../../lib/util/errors.js";
import { mapNativeEvents } from "../../lib/sources/native.js";

const nowMs = Date.UTC(2026, 10, 22, 12);
const time = nowMs / 1000;

function lines(body: unknown, config: Record<string, unknown> = {}) {
  return mapNativeEvents(body, { nowMs, config: parseStageConfig(config, "test") });
}

describe("native events", () => {
  it("accepts an array or {events:[…]} and refuses any other envelope", () => {
    expect(lines([{ event: "A", properties: { distinct_id: "u", time } }])[0]?.ok).toBe(true);
    expect(lines({ events: [{ event: "A", properties: { distinct_id: "u", time } }] })[0]?.ok).toBe(true);
    expect(() => lines({ event: "A" })).toThrow(ValidationError);
  });

  it("renames events with event_mapping using own keys only", () => {
    const [renamedItem, inherited] = lines(
      [
        { event: "Sign Up", properties: { distinct_id: "u", time } },
        { event: "toString", properties: { distinct_id: "u", time } },
      ],
      { event_mapping: { "Sign Up": "customer_created" } },
    );
    expect(renamedItem?.ok && JSON.parse(renamedItem.line).event).toBe("customer_created");
    expect(inherited?.ok && JSON.parse(inherited.line).event).toBe("toString");
  });

  it("follows the stage's identity mode", () => {
    const identify = { event: "$identify", properties: { $identified_id: "known", $anon_id: "anon-1", time } };
    const [simplified] = lines([identify]);
    expect(simplified?.ok ? "ok" : simplified?.code).toBe("identity_event_requires_original_mode");
    const [original] = lines([identify], { identity_mode: "original" });
    expect(original?.ok && JSON.parse(original.line).properties.distinct_id).toBe("known");
    const [deviceOnly] = lines([{ event: "Viewed", properties: { $device_id: "d-1", time } }]);
    expect(deviceOnly?.ok && JSON.parse(deviceOnly.line).properties.distinct_id).toBe("$device:d-1");
  });

  it("rejects an event with a __proto__ property at any depth, per event, instead of dropping the key", () => {
    // As the intake parses it: JSON.parse makes "__proto__" an own key.
    const body = JSON.parse(
      `[{"event":"A","properties":{"distinct_id":"u","time":${time},"__proto__":{"x":1}}},` +
        `{"event":"B","properties":{"distinct_id":"u","time":${time},"cart":[{"__proto__":"y"}]}},` +
        `{"event":"C","__proto__":{},"properties":{"distinct_id":"u","time":${time}}},` +
        `{"event":"D","properties":{"distinct_id":"u","time":${time},"constructor":"kept"}}]`,
    );
    const [top, nested, outside, fine] = lines(body);
    expect(top).toMatchObject({ ok: false, index: 0, code: "invalid_property_name", reason: expect.stringContaining("properties.__proto__") });
    expect(top?.ok === false && top.payload).toBe(body[0]);
    expect(nested).toMatchObject({ ok: false, index: 1, code: "invalid_property_name", reason: expect.stringContaining("properties.cart[0].__proto__") });
    expect(outside).toMatchObject({ ok: false, index: 2, code: "invalid_property_name" });
    expect(fine?.ok && JSON.parse(fine.line).properties.constructor).toBe("kept");
  });
});
