import { describe, expect, it } from "vitest";
import { parseStageConfig } from "../../../lib/config/stage.js";
import { ConfigError } from "../../../lib/util/errors.js";

function configError(raw: unknown): string {
  try {
    parseStageConfig(raw, "config/test.json");
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("mapping keys of the stage config", () => {
  it("defaults every mapping key", () => {
    const config = parseStageConfig({}, "test");
    expect(config.event_mapping).toEqual({});
    expect(config.property_mapping).toEqual({});
    expect(config.braze).toEqual({ event_types: "all" });
    expect(config.identity_mode).toBe("simplified");
    expect(config.adobe).toEqual({});
  });

  it("accepts a full mapping section", () => {
    const config = parseStageConfig(
      {
        event_mapping: { "Sign Up": "customer_created" },
        property_mapping: { email: "$email" },
        braze: { event_types: ["users.messages.email.Send", "users_canvas_abort"] },
        identity_mode: "original",
        adobe: { project_token: "tok" },
      },
      "test",
    );
    expect(config.braze.event_types).toEqual(["users.messages.email.Send", "users_canvas_abort"]);
    expect(config.identity_mode).toBe("original");
    expect(config.adobe.project_token).toBe("tok");
  });

  it.each(["event_mapping", "property_mapping"])("refuses __proto__ as a name to rename or to rename to in %s", (key) => {
    // As loadStageConfig parses the file: JSON.parse makes "__proto__" an own key, which zod would drop.
    const asKey = configError(JSON.parse(`{"${key}":{"__proto__":"x","a":"b"}}`));
    expect(asKey).toContain(key);
    expect(asKey).toContain('"__proto__" cannot be renamed');
    const asTarget = configError({ [key]: { email: "__proto__" } });
    expect(asTarget).toContain(`${key}.email`);
    expect(asTarget).toContain('"__proto__" is not a usable name');
    expect(parseStageConfig({ [key]: { constructor: "c" } }, "test")[key as "event_mapping"]).toEqual({ constructor: "c" });
  });

  it("names a misspelt Braze event type by its position", () => {
    const message = configError({ braze: { event_types: ["users.messages.email.Send", "users.messages.email.Sendd"] } });
    expect(message).toContain("braze.event_types.1");
    expect(message).toContain('"users.messages.email.Sendd"');
  });

  it.each([
    [{ braze: { event_type: "all" } }, "braze"],
    [{ braze: { event_types: [] } }, "braze.event_types"],
    [{ braze: { event_types: "some" } }, "braze.event_types"],
    [{ identity_mode: "merged" }, "identity_mode"],
    [{ adobe: { token: "x" } }, "adobe"],
    [{ property_mapping: { email: "" } }, "property_mapping.email"],
    [{ event_mappings: {} }, "event_mappings"],
  ])("names the bad key in %j", (raw, key) => {
    expect(configError(raw)).toContain(key);
  });
});
