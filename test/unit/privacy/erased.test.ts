import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { brevoConfigSchema } from "../../../lib/config/brevo.js";
import { erasedMatcher } from "../../../lib/enqueue/erased.js";
import { activeDigests, idDigest, withSuppressedIds } from "../../../lib/privacy/suppression.js";

const digests = (...ids: string[]) => new Set(ids.map(idDigest));

describe("erasedMatcher", () => {
  it("is absent for an empty or missing list, so nothing is scanned", () => {
    expect(erasedMatcher(undefined, undefined)).toBeUndefined();
    expect(erasedMatcher(new Set(), undefined)).toBeUndefined();
  });

  it("finds the ids of events, profiles and groups at any depth, numbers and escaped strings included", () => {
    const matcher = erasedMatcher(digests("gone", "42", 'quo"te\u00e9', "acme-co"), undefined)!;
    expect(matcher.isErased(JSON.stringify({ event: "e", properties: { distinct_id: "gone" } }))).toBe(true);
    expect(matcher.isErased(JSON.stringify({ event: "e", properties: { distinct_id: "dev", $user_id: "gone" } }))).toBe(true);
    expect(matcher.isErased(JSON.stringify({ $distinct_id: 42, $set: {} }))).toBe(true);
    expect(matcher.isErased(JSON.stringify({ $distinct_id: 'quo"te\u00e9', $set: {} }))).toBe(true);
    expect(matcher.isErased(JSON.stringify({ $group_key: "company", $group_id: "acme-co", $set: {} }))).toBe(true);
    expect(matcher.isErased(JSON.stringify({ event: "e", properties: { distinct_id: "kept", note: '"distinct_id":"gone"' } }))).toBe(false);
    expect(matcher.isErased(JSON.stringify({ event: "e", properties: { distinct_id: "kept", comment: "gone" } }))).toBe(false);
    expect(matcher.isErased(JSON.stringify({ $distinct_id: "kept", $unset: ["distinct_id"] }))).toBe(false);
  });

  it("matches a wanted key only whole, never the end of a longer key or of a key with an escaped quote", () => {
    const matcher = erasedMatcher(digests("gone"), undefined)!;
    expect(matcher.isErased(JSON.stringify({ event: "e", properties: { distinct_id: "kept", my_distinct_id: "gone", app_user_id: "gone" } }))).toBe(false);
    expect(matcher.isErased(JSON.stringify({ event: "e", properties: { distinct_id: "kept", 'x"distinct_id': "gone", "x\\distinct_id": "gone" } }))).toBe(false);
    expect(matcher.isErased(JSON.stringify({ event: "e", properties: { ad_id: "a", app_id: "b", device_id: "gone", distinct_id: "gone" } }))).toBe(true);
    expect(matcher.isErased(JSON.stringify({ external_user_id: "gone" }))).toBe(true);
  });

  it("checks the Brevo identifier properties of the stage, emails without regard to case", () => {
    const brevo = brevoConfigSchema.parse({ api_key_secret: "k", identifiers: { ext_id: "distinct_id", email_id: "$email", phone_id: "$phone" } });
    const matcher = erasedMatcher(digests("person@example.com", "+33612345678"), brevo)!;
    expect(matcher.isErased(JSON.stringify({ $distinct_id: "x", $set: { $email: " Person@Example.COM" } }))).toBe(true);
    expect(matcher.isErased(JSON.stringify({ event: "e", properties: { distinct_id: "x", $phone: "+33612345678" } }))).toBe(true);
    expect(matcher.isErased(JSON.stringify({ event: "e", properties: { distinct_id: "x", $email: "other@example.com" } }))).toBe(false);
    // Without the connector, $email is not an identifier the relay uses.
    expect(erasedMatcher(digests("person@example.com"), undefined)!.isErased(JSON.stringify({ $distinct_id: "x", $set: { $email: "person@example.com" } }))).toBe(false);
  });

  it("agrees with a full parse for any record (property-based)", () => {
    const id = fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom("gone", "Gone", 'g"o\\ne'));
    const erased = digests("gone", 'g"o\\ne');
    const matcher = erasedMatcher(erased, undefined)!;
    fc.assert(
      fc.property(id, fc.dictionary(fc.string({ maxLength: 6 }), fc.oneof(fc.string({ maxLength: 8 }), id), { maxKeys: 4 }), (distinctId, properties) => {
        const record = { event: "e", properties: { ...properties, distinct_id: distinctId } };
        const expected = [distinctId, ...["$user_id", "$device_id", "$distinct_id", "$group_id", "external_user_id"].map((key) => properties[key])].some(
          (value) => typeof value === "string" && value !== "" && erased.has(idDigest(value)),
        );
        expect(matcher.isErased(JSON.stringify(record))).toBe(expected);
      }),
      { seed: 22, numRuns: 300 },
    );
  });
});

describe("the erased-ids list", () => {
  it("reads the old format (no expiry) as suppressed forever", () => {
    expect(activeDigests({ digests: [idDigest("a")] }, Date.now())).toEqual(digests("a"));
  });

  it("keeps an expiry per digest; an expired one is no longer active; forever wins over an expiry", () => {
    const now = 1_000_000;
    let list = withSuppressedIds({ digests: [] }, ["forever"]);
    list = withSuppressedIds(list, ["short", "forever"], { expiresAtMs: now + 10 });
    list = withSuppressedIds(list, ["past"], { expiresAtMs: now - 1 });
    expect(list.v).toBe(1);
    expect(list.expires?.[idDigest("forever")]).toBeUndefined();
    expect(activeDigests(list, now)).toEqual(digests("forever", "short"));
    expect(activeDigests(list, now + 10)).toEqual(digests("forever"));
    // A later erasure without --suppress-days makes it permanent.
    expect(activeDigests(withSuppressedIds(list, ["short"]), now + 10)).toEqual(digests("forever", "short"));
    expect(JSON.stringify(list)).not.toContain("forever");
  });
});
