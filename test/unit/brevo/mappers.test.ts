import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BREVO_NAME, brevoConfigSchema, type BrevoConfig } from "../../../lib/config/brevo.js";
import { attributesAfter, mapProfileToContact, type ContactOperation } from "../../../lib/brevo/contacts.js";
import { mapGroupToCompany } from "../../../lib/brevo/companies.js";
import { brevoEventNameFor, mapEventToBrevo, MAX_EVENT_PROPERTIES_BYTES } from "../../../lib/brevo/events.js";
import { parseStageConfig } from "../../../lib/config/stage.js";

const ISSUE_BLOCK = {
  api_key_secret: "mixpanel-relay/dev/destinations/brevo",
  sync: { events: true, profiles: true, groups: false },
  identifiers: { ext_id: "distinct_id", email_id: "$email" },
  event_mapping: { Purchase: "order_completed", "Sign Up": "customer_created", $experiment_started: "experiment_started" },
  forward_unmapped_events: false,
  property_mapping: {
    $email: "email", $first_name: "FIRSTNAME", $last_name: "LASTNAME", $phone: "SMS", $city: "CITY", $region: "REGION",
    $country_code: "COUNTRY", plan: "PLAN_TYPE", company: "COMPANY", signup_date: "SIGNUP_DATE", total_revenue: "LTV",
  },
  lists: { all_users: 15 },
};
const config: BrevoConfig = brevoConfigSchema.parse(ISSUE_BLOCK);
const T = Date.UTC(2026, 10, 27, 12, 0, 0);
const event = (name: string, properties: Record<string, unknown>) => JSON.stringify({ event: name, properties: { time: T, $insert_id: "i-1", ...properties } });
const engage = (update: Record<string, unknown>) => JSON.stringify({ $distinct_id: "user-1", $ip: "0", ...update });

describe("brevo stage config", () => {
  it("accepts the issue's block inside a stage config", () => {
    const stage = parseStageConfig({ residency: "us", brevo: ISSUE_BLOCK }, "test");
    expect(stage.brevo?.lists.all_users).toBe(15);
    expect(stage.brevo?.sync).toEqual({ events: true, profiles: true, groups: false });
  });

  it.each([
    [{ event_mapping: { Purchase: "order completed" } }, "brevo.event_mapping.Purchase"],
    [{ property_mapping: { plan: "plan_type" } }, "brevo.property_mapping.plan"],
    [{ identifiers: {} }, "brevo.identifiers"],
    [{ sync: { event: true } }, "brevo.sync"],
    [{ lists: { all_users: 0 } }, "brevo.lists.all_users"],
    [{ api_key_secret: "" }, "brevo.api_key_secret"],
    [{ surprise: 1 }, "brevo"],
    [{ property_mapping: { a: "PLAN", b: "PLAN" } }, "brevo.property_mapping.b"],
    [{ companies: { id_attribute: "Mixpanel Group" } }, "brevo.companies.id_attribute"],
  ])("names the bad key (%j)", (patch, key) => {
    expect(() => parseStageConfig({ brevo: { ...ISSUE_BLOCK, ...patch } }, "test")).toThrow(new RegExp(`${key.replace(/\./g, "\\.")}[.:]`));
  });
});

describe("events → Brevo events", () => {
  it("renames through event_mapping, ext_id = distinct id, event_date from time, properties kept", () => {
    const result = mapEventToBrevo(event("Purchase", { distinct_id: "user-1", amount: 12.5, $os: "iOS", "Plan Type": "pro", nested: { "a b": [1, { $c: true }] } }), config, "original");
    expect(result).toEqual({
      status: "send",
      trimmed: [],
      insertId: "i-1",
      event: {
        event_name: "order_completed",
        identifiers: { ext_id: "user-1" },
        event_date: "2026-11-27T12:00:00.000Z",
        event_properties: { distinct_id: "user-1", amount: 12.5, insert_id: "i-1", os: "iOS", Plan_Type: "pro", nested: { a_b: [1, { c: true }] } },
      },
    });
  });

  it("skips unmapped events unless forward_unmapped_events, then names them deterministically", () => {
    expect(mapEventToBrevo(event("Viewed Page", { distinct_id: "u" }), config, "original")).toMatchObject({ status: "skip", code: "unmapped_event" });
    const forwarding = { ...config, forward_unmapped_events: true };
    expect(mapEventToBrevo(event("Viewed Page!", { distinct_id: "u" }), forwarding, "original")).toMatchObject({ status: "send", event: { event_name: "Viewed_Page_" } });
    expect(brevoEventNameFor("$identify")).toBe("identify");
    expect(brevoEventNameFor("$$$")).toBe("event");
  });

  it("skips an event with no identifier and takes email from the configured property", () => {
    expect(mapEventToBrevo(event("Purchase", { distinct_id: "" }), config, "original")).toMatchObject({ status: "skip", code: "no_identifier" });
    expect(mapEventToBrevo(event("Purchase", { distinct_id: "", $email: "a@b.co" }), config, "original")).toMatchObject({
      status: "send",
      event: { identifiers: { email_id: "a@b.co" } },
    });
  });

  it("under simplified ID merge uses $user_id and gives anonymous devices no ext_id", () => {
    expect(mapEventToBrevo(event("Purchase", { distinct_id: "$device:d1", $device_id: "d1" }), config, "simplified")).toMatchObject({ status: "skip", code: "no_identifier" });
    expect(mapEventToBrevo(event("Purchase", { distinct_id: "d1", $device_id: "d1" }), config, "simplified")).toMatchObject({ status: "skip" });
    expect(mapEventToBrevo(event("Purchase", { distinct_id: "d1", $device_id: "d1", $user_id: "u9" }), config, "simplified")).toMatchObject({
      status: "send",
      event: { identifiers: { ext_id: "u9" } },
    });
  });

  it("trims the largest properties until event_properties fit in 50 KB", () => {
    const result = mapEventToBrevo(event("Purchase", { distinct_id: "u", big: "x".repeat(60_000), small: "s" }), config, "original");
    expect(result.status).toBe("send");
    if (result.status !== "send") return;
    expect(result.trimmed).toEqual(["big"]);
    expect(result.event.event_properties?.small).toBe("s");
    expect(Buffer.byteLength(JSON.stringify(result.event.event_properties))).toBeLessThanOrEqual(MAX_EVENT_PROPERTIES_BYTES);
  });

  it("property: every key sent and every generated name follows Brevo's rule", () => {
    const forwarding = { ...config, forward_unmapped_events: true };
    fc.assert(
      fc.property(fc.string(), fc.dictionary(fc.string(), fc.jsonValue()), (name, properties) => {
        const result = mapEventToBrevo(JSON.stringify({ event: name, properties: { ...properties, distinct_id: "u" } }), forwarding, "original");
        if (result.status !== "send") return;
        expect(result.event.event_name).toMatch(BREVO_NAME);
        const walk = (value: unknown): void => {
          if (Array.isArray(value)) value.forEach(walk);
          else if (value !== null && typeof value === "object") for (const [key, inner] of Object.entries(value)) {
            expect(key).toMatch(BREVO_NAME);
            walk(inner);
          }
        };
        walk(result.event.event_properties);
      }),
      { numRuns: 200, seed: 1127 },
    );
  });

  it("rejects a line that is not an event", () => {
    expect(mapEventToBrevo("nope", config, "original")).toMatchObject({ status: "reject" });
  });
});

describe("/engage operations → Brevo contacts", () => {
  const send = (update: Record<string, unknown>): ContactOperation => {
    const result = mapProfileToContact(engage(update), config, "simplified");
    if (result.status !== "send") throw new Error(`expected send, got ${JSON.stringify(result)}`);
    return result.operation;
  };

  it("$set: upsert with ext_id, email, mapped UPPERCASE attributes and the all_users list", () => {
    expect(send({ $set: { $email: "u1@example.com", $first_name: "Ada", plan: "pro", unmapped: 1 } })).toEqual({
      op: "upsert",
      key: { type: "ext_id", value: "user-1" },
      extId: "user-1",
      email: "u1@example.com",
      attributes: { FIRSTNAME: "Ada", PLAN_TYPE: "pro" },
      listIds: [15],
      onlyIfAbsent: false,
    });
  });

  it("$set_once never overwrites", () => {
    const operation = send({ $set_once: { plan: "free", $first_name: "Ada" } });
    expect(operation).toMatchObject({ op: "upsert", onlyIfAbsent: true });
    expect(attributesAfter(operation, { PLAN_TYPE: "pro" })).toEqual({ FIRSTNAME: "Ada" });
    expect(attributesAfter(operation, undefined)).toEqual({ PLAN_TYPE: "free", FIRSTNAME: "Ada" });
  });

  it("$add increments the current value (0 when empty)", () => {
    const operation = send({ $add: { total_revenue: 10, unmapped: 3 } });
    expect(operation).toEqual({ op: "add", key: { type: "ext_id", value: "user-1" }, increments: { LTV: 10 }, listIds: [15] });
    expect(attributesAfter(operation, { LTV: 5.5 })).toEqual({ LTV: 15.5 });
    expect(attributesAfter(operation, undefined)).toEqual({ LTV: 10 });
  });

  it("$union/$append/$remove act on multiple-choice attributes as sets", () => {
    const union = send({ $union: { plan: ["a", "b"] } });
    expect(attributesAfter(union, { PLAN_TYPE: ["b", "c"] })).toEqual({ PLAN_TYPE: ["b", "c", "a"] });
    const append = send({ $append: { plan: "c" } });
    expect(attributesAfter(append, { PLAN_TYPE: ["c"] })).toEqual({ PLAN_TYPE: ["c"] });
    const remove = send({ $remove: { plan: "c" } });
    expect(attributesAfter(remove, { PLAN_TYPE: ["b", "c"] })).toEqual({ PLAN_TYPE: ["b"] });
  });

  it("$unset clears mapped attributes (never the email), $delete deletes", () => {
    const unset = send({ $unset: ["plan", "$email", "nope"] });
    expect(unset).toEqual({ op: "unset", key: { type: "ext_id", value: "user-1" }, attributes: ["PLAN_TYPE"] });
    expect(attributesAfter(unset, { PLAN_TYPE: "pro" })).toEqual({ PLAN_TYPE: "" });
    expect(send({ $delete: "" })).toEqual({ op: "delete", key: { type: "ext_id", value: "user-1" } });
  });

  it("skips what has no identifier or nothing mapped", () => {
    expect(mapProfileToContact(JSON.stringify({ $distinct_id: "$device:x", $set: { plan: "a" } }), config, "simplified")).toMatchObject({ status: "skip", code: "no_identifier" });
    expect(mapProfileToContact(engage({ $add: { unmapped: 1 } }), config, "simplified")).toMatchObject({ status: "skip", code: "nothing_mapped" });
    // An anonymous profile that carries an email is still keyed, by email.
    expect(mapProfileToContact(JSON.stringify({ $distinct_id: "$device:x", $set: { $email: "a@b.co" } }), config, "simplified")).toMatchObject({
      status: "send",
      operation: { key: { type: "email_id", value: "a@b.co" }, email: "a@b.co" },
    });
  });
});

describe("/groups updates → Brevo companies", () => {
  const withCompanies = brevoConfigSchema.parse({ ...ISSUE_BLOCK, companies: { property_mapping: { domain: "domain", seats: "seats" } } });
  const group = (update: Record<string, unknown>) => JSON.stringify({ $group_key: "company_id", $group_id: "acme", ...update });

  it("$set upserts by the group marker with name and mapped attributes", () => {
    expect(mapGroupToCompany(group({ $set: { $name: "Acme", domain: "acme.io", seats: 40, other: 1 } }), withCompanies)).toEqual({
      status: "send",
      operation: { op: "upsert", marker: "company_id:acme", name: "Acme", attributes: { domain: "acme.io", seats: 40 }, onlyOnCreate: false },
    });
    expect(mapGroupToCompany(group({ $set_once: { domain: "x" } }), withCompanies)).toMatchObject({ status: "send", operation: { name: "acme", onlyOnCreate: true } });
  });

  it("$unset, $delete map; $union/$remove are not mappable", () => {
    expect(mapGroupToCompany(group({ $unset: ["domain"] }), withCompanies)).toMatchObject({ operation: { op: "unset", attributes: ["domain"] } });
    expect(mapGroupToCompany(group({ $delete: "" }), withCompanies)).toMatchObject({ operation: { op: "delete", marker: "company_id:acme" } });
    expect(mapGroupToCompany(group({ $union: { tags: ["a"] } }), withCompanies)).toMatchObject({ status: "skip", code: "not_mappable" });
  });
});

describe("hostile records", () => {
  const anyLine = fc.oneof(
    fc.string(),
    fc.jsonValue().map((value) => JSON.stringify(value)),
    fc.record({ event: fc.string(), properties: fc.dictionary(fc.string(), fc.jsonValue()) }).map((value) => JSON.stringify(value)),
    fc
      .record({
        $distinct_id: fc.oneof(fc.string(), fc.integer()),
        $group_key: fc.string(),
        $group_id: fc.oneof(fc.string(), fc.integer()),
        op: fc.constantFrom("$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete"),
        value: fc.jsonValue(),
      })
      .map(({ op, value, ...rest }) => JSON.stringify({ ...rest, [op]: value })),
  );
  const everything = brevoConfigSchema.parse({ ...ISSUE_BLOCK, forward_unmapped_events: true, sync: { events: true, profiles: true, groups: true }, companies: { group_keys: ["company"] } });

  it("property: no line makes a mapper throw; each answers send, skip or reject", () => {
    fc.assert(
      fc.property(anyLine, (line) => {
        for (const mode of ["simplified", "original"] as const) {
          expect(["send", "skip", "reject"]).toContain(mapEventToBrevo(line, everything, mode).status);
          const contact = mapProfileToContact(line, everything, mode);
          expect(["send", "skip", "reject"]).toContain(contact.status);
          if (contact.status === "send") {
            for (const name of Object.keys("attributes" in contact.operation ? contact.operation.attributes : {})) expect(name).toMatch(/^[A-Z][A-Z0-9_]*$/);
          }
        }
        expect(["send", "skip", "reject"]).toContain(mapGroupToCompany(line, everything).status);
      }),
      { numRuns: 300, seed: 1127 },
    );
  });
});
