import { describe, expect, it } from "vitest";
import { parseStageConfig } from "../../lib/config/stage.js";
import { ValidationError } from "../../lib/errors.js";
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
});
