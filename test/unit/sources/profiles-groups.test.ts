import { describe, expect, it } from "vitest";
import { ValidationError } from "../../../lib/util/errors.js";
import { mapGroupUpdates } from "../../../lib/sources/groups.js";
import { mapProfileUpdates } from "../../../lib/sources/profiles.js";
import { context, expectRecord, expectRejected, parseUpdateLine } from "./support.js";

/** Expectations follow docs/vendors/mixpanel-api.md §6 (/engage, /groups) and §5 ($ip). */
describe("profile updates (/engage)", () => {
  it.each([
    ["$set", { plan: "pro", $email: "a@example.org" }, { plan: "pro", $email: "a@example.org" }],
    ["$set_once", { first_seen: "2026-01-01" }, { first_seen: "2026-01-01" }],
    ["$add", { logins: 1, balance: -2.5 }, { logins: 1, balance: -2.5 }],
    ["$union", { tags: ["a", "b"] }, { tags: ["a", "b"] }],
    ["$append", { history: "x" }, { history: "x" }],
    ["$remove", { tags: "a" }, { tags: "a" }],
    ["$unset", ["plan", "tags"], ["plan", "tags"]],
    ["$delete", null, ""],
  ])("%s", (op, value, expected) => {
    const [item] = mapProfileUpdates([{ $distinct_id: "user-1", [op]: value }], context());
    expect(expectRecord(item).kind).toBe("profile");
    expect(parseUpdateLine(item)).toEqual({ $distinct_id: "user-1", $ip: "0", [op]: expected });
  });

  it("never includes $token and keeps the sender's $ip and modifiers", () => {
    const [item] = mapProfileUpdates(
      { updates: [{ $token: "secret-ish", $distinct_id: 42, $ip: "203.0.113.9", $ignore_time: true, $set: { a: 1 } }] },
      context(),
    );
    expect(parseUpdateLine(item)).toEqual({ $distinct_id: "42", $ip: "203.0.113.9", $ignore_time: true, $set: { a: 1 } });
    expect(expectRecord(item).line).not.toContain("secret-ish");
  });

  it("renames profile property names with property_mapping, in every operation that names properties", () => {
    const ctx = context({ property_mapping: { email: "$email", name: "$name" } });
    const items = mapProfileUpdates(
      [
        { $distinct_id: "u", $set: { email: "a@example.org", name: "Ana", plan: "pro" } },
        { $distinct_id: "u", $unset: ["email", "plan"] },
        { $distinct_id: "u", $set_once: { constructor: "kept" } },
      ],
      ctx,
    );
    expect(parseUpdateLine(items[0]).$set).toEqual({ $email: "a@example.org", $name: "Ana", plan: "pro" });
    expect(parseUpdateLine(items[1]).$unset).toEqual(["$email", "plan"]);
    expect(parseUpdateLine(items[2]).$set_once).toEqual({ constructor: "kept" });
  });

  it.each([
    [{ $set: { a: 1 } }, "invalid_shape", "$distinct_id"],
    [{ $distinct_id: "", $set: { a: 1 } }, "invalid_shape", "$distinct_id"],
    [{ $distinct_id: "null", $set: { a: 1 } }, "banned_distinct_id", "null"],
    [{ $distinct_id: "u" }, "invalid_operation", "no operation"],
    [{ $distinct_id: "u", $set: { a: 1 }, $add: { n: 1 } }, "invalid_operation", "one operation"],
    [{ $distinct_id: "u", $add: { n: "1" } }, "invalid_operation", "numbers"],
    [{ $distinct_id: "u", $union: { tags: "a" } }, "invalid_operation", "lists"],
    [{ $distinct_id: "u", $unset: "plan" }, "invalid_operation", "names"],
    [{ $distinct_id: "u", $set: ["a"] }, "invalid_operation", "object"],
    [{ $distinct_id: "u", email: "a@example.org" }, "unknown_field", "email"],
    [{ $distinct_id: "u", $ip: 5, $set: { a: 1 } }, "invalid_shape", "$ip"],
    ["nope", "invalid_shape", "object"],
  ])("rejects %j with %s", (update, code, mention) => {
    const rejected = expectRejected(mapProfileUpdates([update], context())[0]);
    expect(rejected.code).toBe(code);
    expect(rejected.reason).toContain(mention);
    expect(rejected.payload).toEqual(update);
  });

  it("rejects a numeric $distinct_id that is not a safe integer instead of sending a rounded, different id", () => {
    // As the intake parses it: 12345678901234567890 reads as 12345678901234567000.
    const updates: unknown[] = JSON.parse(
      '[{"$distinct_id":12345678901234567890,"$set":{"a":1}},{"$distinct_id":9007199254740992,"$set":{"a":1}},' +
        '{"$distinct_id":1.5,"$set":{"a":1}},{"$distinct_id":9007199254740991,"$set":{"a":1}},{"$distinct_id":"12345678901234567890","$set":{"a":1}}]',
    );
    const [huge, justAbove, fraction, largestSafe, asString] = mapProfileUpdates(updates, context());
    expect(expectRejected(huge)).toMatchObject({ index: 0, code: "invalid_distinct_id", payload: updates[0] });
    expect(expectRejected(huge).reason).toContain("send the id as a string");
    expect(expectRejected(justAbove).code).toBe("invalid_distinct_id");
    expect(expectRejected(fraction).code).toBe("invalid_distinct_id");
    expect(parseUpdateLine(largestSafe).$distinct_id).toBe("9007199254740991");
    expect(parseUpdateLine(asString).$distinct_id).toBe("12345678901234567890");
  });

  it("maps a property value holding U+FFFF to a normal update (the envelope, not the mapper, deals with it)", () => {
    const line = parseUpdateLine(mapProfileUpdates([{ $distinct_id: "u", $set: { note: "a\uFFFFb\uFFFE" } }], context())[0]);
    expect(line.$set).toEqual({ note: "a\uFFFFb\uFFFE" });
  });

  it("caps an update at 2000 properties", () => {
    const properties = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}`, i]));
    expectRecord(mapProfileUpdates([{ $distinct_id: "u", $set: properties(2000) }], context())[0]);
    const rejected = expectRejected(mapProfileUpdates([{ $distinct_id: "u", $set: properties(2001) }], context())[0]);
    expect(rejected).toMatchObject({ code: "too_many_properties" });
    expect(rejected.reason).toContain("2001");
  });

  it("refuses an update of 1 MB or more", () => {
    const rejected = expectRejected(mapProfileUpdates([{ $distinct_id: "u", $set: { blob: "x".repeat(1_000_000) } }], context())[0]);
    expect(rejected.code).toBe("update_too_large");
  });

  it.each([
    ["inside an operation", '{"$distinct_id":"u","$set":{"__proto__":{"a":1}}}', "$set.__proto__"],
    ["nested in a value", '{"$distinct_id":"u","$set":{"cart":{"items":[{"__proto__":1}]}}}', "$set.cart.items[0].__proto__"],
    ["at the top level", '{"$distinct_id":"u","__proto__":{"x":1},"$set":{"a":1}}', "__proto__"],
    ["in $union", '{"$distinct_id":"u","$union":{"__proto__":["a"]}}', "$union.__proto__"],
  ])("rejects a __proto__ key %s as invalid_property_name, never as a silently emptied update", (_case, text, where) => {
    // As the intake parses it: JSON.parse makes "__proto__" an own key.
    const update: unknown = JSON.parse(text);
    const [rejected, next] = mapProfileUpdates([update, { $distinct_id: "u", $set: { a: 1 } }], context());
    expect(expectRejected(rejected)).toMatchObject({ index: 0, code: "invalid_property_name", payload: update });
    expect(expectRejected(rejected).reason).toContain(where);
    expect(parseUpdateLine(next).$set).toEqual({ a: 1 });
  });

  it.each([[{ update: [] }], ["[]"], [null], [{}]])("refuses body %j as a whole", (body) => {
    expect(() => mapProfileUpdates(body, context())).toThrow(ValidationError);
  });
});

describe("group updates (/groups)", () => {
  it.each([
    ["$set", { name: "Acme" }, { name: "Acme" }],
    ["$set_once", { founded: 1999 }, { founded: 1999 }],
    ["$union", { domains: ["acme.example"] }, { domains: ["acme.example"] }],
    ["$remove", { domains: "old.example" }, { domains: "old.example" }],
    ["$unset", ["name"], ["name"]],
    ["$delete", "", ""],
  ])("%s", (op, value, expected) => {
    const [item] = mapGroupUpdates({ updates: [{ $group_key: "company_id", $group_id: "acme", [op]: value }] }, context());
    expect(expectRecord(item).kind).toBe("group");
    expect(parseUpdateLine(item)).toEqual({ $group_key: "company_id", $group_id: "acme", $ip: "0", [op]: expected });
  });

  it.each(["$add", "$append"])("refuses %s with the reason", (op) => {
    const rejected = expectRejected(mapGroupUpdates([{ $group_key: "company_id", $group_id: 7, [op]: { n: 1 } }], context())[0]);
    expect(rejected.code).toBe("unsupported_group_operation");
    expect(rejected.reason).toContain(op);
  });

  it("does not apply the profile property_mapping and drops $token", () => {
    const ctx = context({ property_mapping: { name: "$name" } });
    const line = parseUpdateLine(mapGroupUpdates([{ $token: "t", $group_key: "k", $group_id: 7, $set: { name: "Acme" } }], ctx)[0]);
    expect(line).toEqual({ $group_key: "k", $group_id: 7, $ip: "0", $set: { name: "Acme" } });
  });

  it.each([
    [{ $group_id: "a", $set: { x: 1 } }, "invalid_shape", "$group_key"],
    [{ $group_key: "k", $set: { x: 1 } }, "invalid_shape", "$group_id"],
    [{ $group_key: "k", $group_id: "a", $distinct_id: "u", $set: { x: 1 } }, "unknown_field", "$distinct_id"],
    [{ $group_key: "k", $group_id: "a" }, "invalid_operation", "no operation"],
  ])("rejects %j with %s", (update, code, mention) => {
    const rejected = expectRejected(mapGroupUpdates([update], context())[0]);
    expect(rejected.code).toBe(code);
    expect(rejected.reason).toContain(mention);
  });

  it("rejects a __proto__ key anywhere in a group update as invalid_property_name", () => {
    const updates: unknown[] = JSON.parse(
      '[{"$group_key":"k","$group_id":"a","$set":{"__proto__":{"a":1}}},' +
        '{"$group_key":"k","$group_id":"a","__proto__":{},"$set":{"x":1}},' +
        '{"$group_key":"k","$group_id":"a","$set_once":{"x":1}}]',
    );
    const [inOperation, topLevel, fine] = mapGroupUpdates(updates, context());
    expect(expectRejected(inOperation)).toMatchObject({ index: 0, code: "invalid_property_name", payload: updates[0] });
    expect(expectRejected(inOperation).reason).toContain("$set.__proto__");
    expect(expectRejected(topLevel)).toMatchObject({ index: 1, code: "invalid_property_name" });
    expect(parseUpdateLine(fine).$set_once).toEqual({ x: 1 });
  });

  it("rejects a numeric $group_id that is not a safe integer, keeps safe ones as numbers", () => {
    const updates: unknown[] = JSON.parse(
      '[{"$group_key":"k","$group_id":12345678901234567890,"$set":{"x":1}},{"$group_key":"k","$group_id":0.5,"$set":{"x":1}},' +
        '{"$group_key":"k","$group_id":9007199254740991,"$set":{"x":1}}]',
    );
    const [huge, fraction, largestSafe] = mapGroupUpdates(updates, context());
    expect(expectRejected(huge)).toMatchObject({ index: 0, code: "invalid_group_id", payload: updates[0] });
    expect(expectRejected(huge).reason).toContain("$group_id");
    expect(expectRejected(fraction).code).toBe("invalid_group_id");
    expect(parseUpdateLine(largestSafe).$group_id).toBe(9007199254740991);
  });
});
