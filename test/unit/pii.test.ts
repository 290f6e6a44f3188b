import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { parseStageConfig } from "../../lib/config/stage.js";
import { piiConfigSchema } from "../../lib/config/pii.js";
import { createPiiPolicy, protectLine, protectProperties, protectRecord, scrubPayload } from "../../lib/pii/policy.js";

const KEY = "k".repeat(40);
const hmac = (text: string) => createHmac("sha256", KEY).update(text).digest("hex");
const config = piiConfigSchema.parse({ properties: { $email: "hash", phone: "drop", "[Custom event property] email": "hash", $distinct_id: "hash" } });
const policy = createPiiPolicy(config, KEY, [(name) => `[Custom event property] ${name}`]);
if (!policy) throw new Error("policy expected");

describe("pii policy", () => {
  it("hashes with HMAC-SHA256 hex (same input, same output) and drops, at any depth", () => {
    const result = protectProperties({ $email: "a@b.c", phone: "+1555", keep: 1, nested: { $email: "x@y.z", phone: 2 }, list: [{ $email: 7 }] }, policy);
    expect(result).toEqual({ $email: hmac("a@b.c"), keep: 1, nested: { $email: hmac("x@y.z") }, list: [{ $email: hmac("7") }] });
    expect(protectProperties({ $email: "a@b.c" }, policy).$email).toBe(result.$email);
    expect(protectProperties({ $email: ["a", null] }, policy).$email).toEqual([hmac("a"), null]);
  });

  it("applies to events' properties and to update operations; $add drops, $unset keeps names, ids hash when named", () => {
    const event = JSON.parse(protectLine("event", JSON.stringify({ event: "E", properties: { $email: "a@b.c", distinct_id: "u" } }), policy));
    expect(event).toEqual({ event: "E", properties: { $email: hmac("a@b.c"), distinct_id: "u" } });
    expect(protectRecord("profile", { $distinct_id: "u1", $set: { $email: "a@b.c", phone: "1" } }, policy)).toEqual({ $distinct_id: hmac("u1"), $set: { $email: hmac("a@b.c") } });
    expect(protectRecord("profile", { $distinct_id: "u1", $add: { phone: 1, n: 2 } }, policy)).toEqual({ $distinct_id: hmac("u1"), $add: { n: 2 } });
    expect(protectRecord("profile", { $distinct_id: "u1", $unset: ["$email", "phone"] }, policy)).toEqual({ $distinct_id: hmac("u1"), $unset: ["$email", "phone"] });
    expect(protectRecord("group", { $group_key: "company", $group_id: "c", $union: { $email: ["a"] } }, policy)).toEqual({ $group_key: "company", $group_id: "c", $union: { $email: [hmac("a")] } });
  });

  it("scrubs raw rejected payloads: input names, Adobe rows and JSON text", () => {
    const scrubbed = scrubPayload(
      {
        properties: { custom_properties: { email: "c@d.e" }, phone: "1" },
        custom_properties: [{ key: "$email", value: "row@x.y" }, { key: "phone", value: "2" }, { key: "other", value: "kept" }],
        avro: JSON.stringify({ email: "text@x.y", phone: 3 }),
      },
      policy,
    );
    expect(scrubbed).toEqual({
      properties: { custom_properties: { email: hmac("c@d.e") } },
      custom_properties: [{ key: "$email", value: hmac("row@x.y") }, { key: "phone" }, { key: "other", value: "kept" }],
      avro: JSON.stringify({ email: hmac("text@x.y") }),
    });
  });

  it("refuses rules Mixpanel cannot live with, naming the key, and a hash rule without a key", () => {
    expect(() => parseStageConfig({ pii: { properties: { distinct_id: "drop" } } }, "test")).toThrow(/pii\.properties\.distinct_id/);
    expect(() => parseStageConfig({ pii: { properties: { time: "hash" } } }, "test")).toThrow(/pii\.properties\.time/);
    expect(() => parseStageConfig({ pii: { properties: { $email: "mask" } } }, "test")).toThrow(/pii\.properties\.\$email/);
    expect(() => createPiiPolicy(config, undefined)).toThrow(/key/);
    expect(createPiiPolicy(piiConfigSchema.parse({ properties: { phone: "drop" } }), undefined)).toBeDefined();
    expect(createPiiPolicy(undefined, KEY)).toBeUndefined();
  });
});
