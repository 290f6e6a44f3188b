import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { brevoConfigSchema } from "../../../lib/config/brevo.js";
import { erasedMatcher } from "../../../lib/enqueue/erased.js";
import { SuppressedDigests, activeDigests, idDigest, idHint, withSuppressedIds } from "../../../lib/privacy/suppression.js";

const digests = (...ids: string[]) => new Set(ids.map(idDigest));
/** The list as the edges read it from a file gdpr:delete wrote: digests with their hints. */
const hinted = (...ids: string[]) => activeDigests(withSuppressedIds({ digests: [] }, ids), Date.now());
const sorted = (set: ReadonlySet<string>) => [...set].sort();

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
    // A property name is matched as written, never as a pattern.
    const dotted = erasedMatcher(digests("gone"), brevoConfigSchema.parse({ api_key_secret: "k", identifiers: { ext_id: "user.id" } }))!;
    expect(dotted.isErased(JSON.stringify({ event: "e", properties: { distinct_id: "x", "user.id": "gone" } }))).toBe(true);
    expect(dotted.isErased(JSON.stringify({ event: "e", properties: { distinct_id: "x", userXid: "gone" } }))).toBe(false);
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
    expect(sorted(activeDigests({ digests: [idDigest("a")] }, Date.now()))).toEqual(sorted(digests("a")));
  });

  it("keeps an expiry per digest; an expired one is no longer active; forever wins over an expiry", () => {
    const now = 1_000_000;
    let list = withSuppressedIds({ digests: [] }, ["forever"]);
    list = withSuppressedIds(list, ["short", "forever"], { expiresAtMs: now + 10 });
    list = withSuppressedIds(list, ["past"], { expiresAtMs: now - 1 });
    expect(list.v).toBe(1);
    expect(list.expires?.[idDigest("forever")]).toBeUndefined();
    expect(sorted(activeDigests(list, now))).toEqual(sorted(digests("forever", "short")));
    expect(sorted(activeDigests(list, now + 10))).toEqual(sorted(digests("forever")));
    // A later erasure without --suppress-days makes it permanent.
    expect(sorted(activeDigests(withSuppressedIds(list, ["short"]), now + 10))).toEqual(sorted(digests("forever", "short")));
    expect(JSON.stringify(list)).not.toContain("forever");
  });

  it("keeps a hint per digest, and offers the hints only when every active digest has one", () => {
    const list = withSuppressedIds({ digests: [] }, ["a", "b"]);
    expect(list.hints).toEqual({ [idDigest("a")]: idHint("a"), [idDigest("b")]: idHint("b") });
    expect(JSON.stringify(list)).not.toMatch(/"a"|"b"/);
    expect(activeDigests(list, Date.now()).hints).toEqual(new Set([idHint("a"), idHint("b")]));
    // A list written before hints, then added to: the old digest has none, so digests alone decide.
    const mixed = withSuppressedIds({ digests: [idDigest("old")] }, ["new"]);
    expect(activeDigests(mixed, Date.now()).hints).toBeUndefined();
    // An expired digest without a hint does not stop the others' hints from being used.
    const expired = { ...withSuppressedIds({ digests: [] }, ["a"]), digests: [idDigest("a"), idDigest("gone")], expires: { [idDigest("gone")]: 1 } };
    expect(activeDigests(expired, Date.now()).hints).toEqual(new Set([idHint("a")]));
  });
});

describe("erasedMatcher with the list's hints", () => {
  it("finds erased ids through their hints, emails lower-cased, and a list without hints by digest alone", () => {
    const brevo = brevoConfigSchema.parse({ api_key_secret: "k", identifiers: { email_id: "$email" } });
    for (const list of [hinted("gone", "person@example.com"), activeDigests({ digests: [idDigest("gone"), idDigest("person@example.com")] }, Date.now())]) {
      const matcher = erasedMatcher(list, brevo)!;
      expect(matcher.isErased(JSON.stringify({ event: "e", properties: { distinct_id: "gone" } }))).toBe(true);
      expect(matcher.isErased(JSON.stringify({ $distinct_id: "x", $set: { $email: " Person@Example.COM" } }))).toBe(true);
      expect(matcher.isErased(JSON.stringify({ event: "e", properties: { distinct_id: "kept" } }))).toBe(false);
    }
  });

  it("takes a listed hint as a reason to check the digest, never as proof", () => {
    // "kept"'s hint is listed (as a colliding id's would be), its digest is not.
    const list = new SuppressedDigests([idDigest("gone")], new Set([idHint("gone"), idHint("kept")]));
    const matcher = erasedMatcher(list, undefined)!;
    expect(matcher.isErased(JSON.stringify({ event: "e", properties: { distinct_id: "kept" } }))).toBe(false);
    expect(matcher.isErased(JSON.stringify({ event: "e", properties: { distinct_id: "gone" } }))).toBe(true);
  });

  it("answers as the digests alone do, for any ids (property-based)", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ maxLength: 10 }), { minLength: 1, maxLength: 20 }), fc.array(fc.string({ maxLength: 10 }), { maxLength: 20 }), (erasedIds, seen) => {
        const withHints = erasedMatcher(hinted(...erasedIds), undefined)!;
        const byDigest = erasedMatcher(digests(...erasedIds), undefined)!;
        for (const id of [...erasedIds, ...seen]) {
          const record = JSON.stringify({ event: "e", properties: { distinct_id: id } });
          expect(withHints.isErased(record)).toBe(byDigest.isErased(record));
        }
      }),
      { seed: 2026, numRuns: 300 },
    );
  });
});
