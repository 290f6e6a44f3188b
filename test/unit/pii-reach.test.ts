import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { piiConfigSchema } from "../../lib/config/pii.js";
import { createPiiPolicy, protectLine, protectProperties, protectRecord, scrubPayload } from "../../lib/pii/policy.js";
import { CUSTOM_EVENT_PROPERTY_PREFIX, PURCHASE_PROPERTY_PREFIX } from "../../lib/vocabulary/braze-property-prefixes.js";

/**
 * One scrubber for every copy: a rule on a name covers it under the relay's source prefixes,
 * Adobe `{key, value}` rows by every segment of a dotted / indexed key, and JSON text inside
 * strings, the same on accepted records and on rejected payloads.
 */
const KEY = "k".repeat(40);
const hmac = (text: string) => createHmac("sha256", KEY).update(text).digest("hex");
const policy = createPiiPolicy(piiConfigSchema.parse({ properties: { email: "hash", phone: "drop" } }), KEY);
if (!policy) throw new Error("policy expected");

describe("a rule's reach", () => {
  it("covers the name under every source prefix the relay adds, on accepted records and rejected payloads", () => {
    const properties = { [`${CUSTOM_EVENT_PROPERTY_PREFIX}email`]: "a@b.c", [`${PURCHASE_PROPERTY_PREFIX}email`]: "p@b.c", [`${PURCHASE_PROPERTY_PREFIX}phone`]: "1", keep: 1 };
    const expected = { [`${CUSTOM_EVENT_PROPERTY_PREFIX}email`]: hmac("a@b.c"), [`${PURCHASE_PROPERTY_PREFIX}email`]: hmac("p@b.c"), keep: 1 };
    expect(protectProperties(properties, policy)).toEqual(expected);
    expect(scrubPayload(properties, policy)).toEqual(expected);
    const update = protectRecord("profile", { $distinct_id: "u", $add: { [`${PURCHASE_PROPERTY_PREFIX}phone`]: 1, n: 1 } }, policy);
    expect(update).toEqual({ $distinct_id: "u", $add: { n: 1 } });
  });

  it("scrubs Adobe rows by every segment of a dotted or indexed key", () => {
    const rows = [
      { key: "user.email", value: "u@x.y" },
      { key: "contact.phone", value: "+1555" },
      { key: "a[0].email", value: "a0@x.y" },
      { key: "list[1].phone", value: "+1666" },
      { key: "email.work", value: "w@x.y" },
      { key: "cart.items[0].sku", value: "kept" },
    ];
    expect(scrubPayload({ custom_properties: rows }, policy)).toEqual({
      custom_properties: [
        { key: "user.email", value: hmac("u@x.y") },
        { key: "contact.phone" },
        { key: "a[0].email", value: hmac("a0@x.y") },
        { key: "list[1].phone" },
        { key: "email.work", value: hmac("w@x.y") },
        { key: "cart.items[0].sku", value: "kept" },
      ],
    });
    expect(JSON.stringify(scrubPayload({ custom_properties: JSON.stringify(rows) }, policy))).not.toMatch(/u@x\.y|\+1555|a0@x\.y|\+1666|w@x\.y/);
  });

  it("treats JSON text inside a string property the same on the accepted and the rejected path", () => {
    const blob = JSON.stringify({ nested: { email: "j@x.y", phone: "+1777", n: 1 } });
    const scrubbedBlob = JSON.stringify({ nested: { email: hmac("j@x.y"), n: 1 } });
    expect(protectProperties({ blob }, policy)).toEqual({ blob: scrubbedBlob });
    expect(scrubPayload({ blob }, policy)).toEqual({ blob: scrubbedBlob });
    const event = JSON.parse(protectLine("event", JSON.stringify({ event: "E", properties: { distinct_id: "u", blob } }), policy)) as { properties: { blob: string } };
    expect(event.properties.blob).toBe(scrubbedBlob);
  });

  it("leaves text without a ruled name exactly as sent", () => {
    const untouched = ['{ "a" : 1 }', "[1, 2,\n3]", "{not json", '  {"email_verified": true}  '];
    for (const text of untouched) {
      expect(protectProperties({ text }, policy)).toEqual({ text });
      expect(scrubPayload({ text }, policy)).toEqual({ text });
    }
  });

  it("does not build a tree for JSON text nested past the check's depth: unchanged without a ruled name, replaced by a note with one", () => {
    const deepWithout = `${"[".repeat(200_000)}${"]".repeat(200_000)}`;
    expect(protectProperties({ deepWithout }, policy).deepWithout).toBe(deepWithout);
    const deepWith = `${"[".repeat(200_000)}{"email":"d@x.y"}${"]".repeat(200_000)}`;
    const scrubbed = protectProperties({ deepWith }, policy).deepWith;
    expect(scrubbed).not.toContain("d@x.y");
    expect(scrubPayload({ deepWith }, policy)).toEqual({ deepWith: scrubbed });
  });

  it("finds a ruled name written with JSON escapes inside text", () => {
    const escaped = '{"em\\u0061il":"esc@x.y"}';
    expect(JSON.stringify(protectProperties({ escaped }, policy))).not.toContain("esc@x.y");
  });
});

describe("a rejected item's reason", () => {
  it("never quotes a ruled value the payload had in clear", async () => {
    const { protectItems } = await import("../../lib/pii/items.js");
    const { mapProfileUpdates } = await import("../../lib/sources/profiles.js");
    const { parseStageConfig } = await import("../../lib/config/stage.js");
    const idPolicy = createPiiPolicy(piiConfigSchema.parse({ properties: { $distinct_id: "hash" } }), KEY);
    const items = mapProfileUpdates([{ $distinct_id: 12345678901234567890, $set: { plan: "pro" } }], { nowMs: 0, config: parseStageConfig({}, "test") });
    expect(items[0]?.ok).toBe(false);
    const [item] = protectItems(items, idPolicy);
    expect(JSON.stringify(item)).not.toContain("1234567890123456");
    expect(item?.ok === false && item.reason).toContain("[removed]");
  });
});

describe("the stage's policy with property_mapping", () => {
  it("covers a name the mapping renames to a ruled one, in properties, rows and JSON text", async () => {
    const { piiPolicySource } = await import("../../lib/pii/source.js");
    const { parseStageConfig } = await import("../../lib/config/stage.js");
    const { envSchema } = await import("../../lib/config/env.js");
    const stage = parseStageConfig({ property_mapping: { mail: "$email" }, pii: { properties: { $email: "hash" } } }, "test");
    const env = envSchema.parse({ ...process.env, PII_HASH_KEY: KEY });
    const stagePolicy = await piiPolicySource(stage, env, { getJson: async () => Promise.reject(new Error("no secrets here")) } as never)();
    if (!stagePolicy) throw new Error("policy expected");
    const text = JSON.stringify(protectProperties({ mail: "m1@x.y", blob: JSON.stringify({ deep: { mail: "m2@x.y" } }), rows: [{ key: "a.mail", value: "m3@x.y" }] }, stagePolicy));
    expect(text).not.toMatch(/m[123]@x\.y/);
    expect(text).toContain(hmac("m1@x.y"));
  });
});
