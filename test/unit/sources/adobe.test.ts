import { describe, expect, it } from "vitest";
import { ValidationError } from "../../../lib/util/errors.js";
import { mapAdobeBatch, mapAdobeEvent, resolveCustomProperties } from "../../../lib/sources/adobe.js";
import { NOW_MS, context, expectRecord, expectRejected, parseEventLine } from "./support.js";

const TOKEN = "0123456789abcdef0123456789abcdef";
const SECONDS = Math.floor(NOW_MS / 1000) - 3600;

/** The body Adobe's Mixpanel extension builds (docs/vendors/adobe-forwarding.md §3), with a realistic time. */
function extensionEvent(properties: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return {
    event: "buy",
    properties: { token: TOKEN, time: String(SECONDS), distinct_id: "user-42", $insert_id: "adobe-insert-1", "custom property": "1", ...properties },
    ...extra,
  };
}

describe("Adobe Track Event", () => {
  it("maps the extension's exact body to an /import record, string seconds → integer ms", () => {
    const [item] = mapAdobeBatch([extensionEvent()], context());
    expect(parseEventLine(item)).toEqual({
      event: "buy",
      properties: { time: SECONDS * 1000, distinct_id: "user-42", $insert_id: "adobe-insert-1", "custom property": "1", ip: "0" },
    });
  });

  it("accepts a single object as well as an array, and ms times", () => {
    const [item] = mapAdobeBatch(extensionEvent({ time: SECONDS * 1000 + 123 }), context());
    expect(parseEventLine(item).properties.time).toBe(SECONDS * 1000 + 123);
    const [fromString] = mapAdobeBatch(extensionEvent({ time: String(SECONDS * 1000 + 123) }), context());
    expect(parseEventLine(fromString).properties.time).toBe(SECONDS * 1000 + 123);
  });

  it("stamps a missing time at intake: a resend gets the same $insert_id but a new time, so it does not dedupe", () => {
    const body = [extensionEvent({ time: undefined, $insert_id: undefined })];
    const first = parseEventLine(mapAdobeBatch(body, context({}, NOW_MS))[0]);
    const resent = parseEventLine(mapAdobeBatch(body, context({}, NOW_MS + 90_000))[0]);
    expect(first.properties.time).toBe(NOW_MS);
    expect(resent.properties.time).toBe(NOW_MS + 90_000);
    expect(first.properties.$insert_id).toMatch(/^[0-9a-f]{36}$/);
    // Derived before stamping: the same id on a resend...
    expect(resent.properties.$insert_id).toBe(first.properties.$insert_id);
    // ...but Mixpanel dedupes on (event, distinct_id, time, $insert_id) (mixpanel-api.md §5), and time differs.
    const dedupKey = (line: typeof first) => [line.event, line.properties.distinct_id, line.properties.time, line.properties.$insert_id];
    expect(dedupKey(resent)).not.toEqual(dedupKey(first));
    const other = parseEventLine(mapAdobeBatch([extensionEvent({ time: undefined, $insert_id: undefined, "custom property": "2" })], context())[0]);
    expect(other.properties.$insert_id).not.toBe(first.properties.$insert_id);
  });

  it("gives a resend that carries time the same dedup key, whenever it arrives", () => {
    const body = [extensionEvent({ $insert_id: undefined })];
    const first = parseEventLine(mapAdobeBatch(body, context({}, NOW_MS))[0]);
    const resent = parseEventLine(mapAdobeBatch(body, context({}, NOW_MS + 90_000))[0]);
    expect(resent).toEqual(first);
    expect(first.properties.time).toBe(SECONDS * 1000);
  });

  it("keeps a sent $insert_id when it stamps the time", () => {
    const line = parseEventLine(mapAdobeEvent(extensionEvent({ time: "" }), 0, context()));
    expect(line.properties).toMatchObject({ $insert_id: "adobe-insert-1", time: NOW_MS });
  });

  it("merges raw-JSON custom properties shallowly, custom keys winning", () => {
    const line = parseEventLine(
      mapAdobeEvent(extensionEvent({ plan: "free" }, { custom_properties: '{"plan":"pro","cart":{"n":2},"distinct_id":"user-43"}' }), 0, context()),
    );
    expect(line.properties).toMatchObject({ plan: "pro", cart: { n: 2 }, distinct_id: "user-43", "custom property": "1" });
  });

  it("builds nested values from key/value rows with dotted and [n] paths", () => {
    const rows = [
      { key: "page.name", value: "home" },
      { key: "items[0].sku", value: "a" },
      { key: "items[1].sku", value: "b" },
      { key: "items[1].qty", value: 3 },
      { key: "tags[0]", value: "x" },
      { key: "flat", value: true },
    ];
    const line = parseEventLine(mapAdobeEvent(extensionEvent({}, { custom_properties: rows }), 0, context()));
    expect(line.properties).toMatchObject({
      page: { name: "home" },
      items: [{ sku: "a" }, { sku: "b", qty: 3 }],
      tags: ["x"],
      flat: true,
    });
    // Rows may also arrive as JSON text.
    const fromText = parseEventLine(mapAdobeEvent(extensionEvent({}, { custom_properties: JSON.stringify(rows) }), 0, context()));
    expect(fromText.properties.items).toEqual([{ sku: "a" }, { sku: "b", qty: 3 }]);
  });

  it.each([
    ["text that is not JSON", "{{dataElement}}"],
    ["JSON text of a scalar", "42"],
    ["a number", 7],
    ["an index past Mixpanel's array cap", [{ key: "a[100000000]", value: 1 }]],
    ["conflicting rows", [{ key: "a[0]", value: 1 }, { key: "a.b", value: 2 }]],
    ["a malformed path", [{ key: "a..b", value: 1 }]],
  ])("rejects custom_properties given as %s", (_case, custom_properties) => {
    const rejected = expectRejected(mapAdobeEvent(extensionEvent({}, { custom_properties }), 2, context()));
    expect(rejected).toMatchObject({ index: 2, code: "invalid_custom_properties" });
  });

  it("keeps constructor as an ordinary key", () => {
    const resolved = resolveCustomProperties('{"constructor":"c","toString":"t"}');
    if (!resolved.ok) throw new Error(resolved.reason);
    expect(resolved.properties).toEqual({ constructor: "c", toString: "t" });
    const line = parseEventLine(mapAdobeEvent(extensionEvent({}, { custom_properties: [{ key: "constructor.name", value: "n" }] }), 0, context()));
    expect(line.properties.constructor).toEqual({ name: "n" });
  });

  it.each([
    ["raw JSON text", '{"plan":"pro","__proto__":{"polluted":1}}', "custom_properties.__proto__"],
    ["JSON text of rows", '[{"key":"plan","value":"pro"},{"key":"x","value":{"__proto__":1}}]', "custom_properties[1].value.__proto__"],
    ["a key/value row path", [{ key: "plan", value: "pro" }, { key: "__proto__.polluted", value: 1 }], '"__proto__.polluted"'],
    ["a nested key/value row path", [{ key: "cart.__proto__", value: 1 }], '"cart.__proto__"'],
    ["a row path with an index", [{ key: "items[0].__proto__", value: 1 }], '"items[0].__proto__"'],
  ])("rejects a __proto__ key in custom_properties given as %s, per event", (_case, custom_properties, where) => {
    const input = extensionEvent({}, { custom_properties });
    const [rejected, next] = mapAdobeBatch([input, extensionEvent()], context());
    expect(expectRejected(rejected)).toMatchObject({ index: 0, code: "invalid_property_name", payload: input });
    expect(expectRejected(rejected).reason).toContain(where);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expectRecord(next);
  });

  it("rejects a __proto__ key in properties, custom_properties or the event itself, also in a single-object body", () => {
    // As the intake parses it: JSON.parse makes "__proto__" an own key.
    const body = (text: string): unknown => JSON.parse(text);
    const cases: [unknown, string][] = [
      [body(`{"event":"buy","properties":{"distinct_id":"u","time":${SECONDS},"__proto__":{"x":1}}}`), "properties.__proto__"],
      [body(`{"event":"buy","properties":{"distinct_id":"u","time":${SECONDS}},"custom_properties":{"a":{"__proto__":1}}}`), "custom_properties.a.__proto__"],
      [body(`{"event":"buy","__proto__":{},"properties":{"distinct_id":"u","time":${SECONDS}}}`), "__proto__"],
    ];
    for (const [input, where] of cases) {
      const [rejected, ...rest] = mapAdobeBatch(input, context());
      expect(rest).toHaveLength(0);
      expect(expectRejected(rejected)).toMatchObject({ index: 0, code: "invalid_property_name", payload: input });
      expect(expectRejected(rejected).reason).toContain(where);
    }
  });

  it("never forwards the token, from properties or from custom properties", () => {
    const item = expectRecord(mapAdobeEvent(extensionEvent({}, { custom_properties: { token: "other-token" } }), 0, context()));
    expect(item.line).not.toContain(TOKEN);
    expect(item.line).not.toContain("other-token");
    expect(parseEventLine(item).properties).not.toHaveProperty("token");
  });

  it("checks the token against adobe.project_token when one is configured", () => {
    const ctx = context({ adobe: { project_token: TOKEN } });
    expectRecord(mapAdobeEvent(extensionEvent(), 0, ctx));
    const wrong = expectRejected(mapAdobeEvent(extensionEvent({ token: "not-it" }), 0, ctx));
    expect(wrong.code).toBe("token_mismatch");
    expect(wrong.reason).not.toContain("not-it");
    expect(wrong.reason).not.toContain(TOKEN);
    expect(expectRejected(mapAdobeEvent(extensionEvent({ token: undefined }), 0, ctx)).code).toBe("token_mismatch");
    // Unconfigured: any token, or none, is ignored.
    expectRecord(mapAdobeEvent(extensionEvent({ token: "whatever" }), 0, context()));
  });

  it("applies event_mapping, with own keys only", () => {
    const ctx = context({ event_mapping: { buy: "purchase" } });
    expect(parseEventLine(mapAdobeEvent(extensionEvent(), 0, ctx)).event).toBe("purchase");
    expect(parseEventLine(mapAdobeEvent({ ...extensionEvent(), event: "constructor" }, 0, ctx)).event).toBe("constructor");
    expect(parseEventLine(mapAdobeEvent({ ...extensionEvent(), event: "toString" }, 0, ctx)).event).toBe("toString");
  });

  it("rejects events Mixpanel would refuse, per event", () => {
    const items = mapAdobeBatch(
      [extensionEvent({ distinct_id: "undefined" }), { properties: {} }, extensionEvent({ time: "yesterday" }), extensionEvent()],
      context(),
    );
    expect(items.map((item) => (item.ok ? "ok" : item.code))).toEqual(["banned_distinct_id", "invalid_shape", "invalid_time", "ok"]);
  });

  it.each([["text"], [42], [null]])("refuses body %j as a whole", (body) => {
    expect(() => mapAdobeBatch(body, context())).toThrow(ValidationError);
  });

  it("treats an empty array as nothing to do", () => {
    expect(mapAdobeBatch([], context())).toEqual([]);
  });
});

describe("Adobe identity events and ID-merge mode", () => {
  const identify = { event: "$identify", properties: { $identified_id: "user-42", $anon_id: "9b2f3c44-1d7e-4a8b-9c0d-1e2f3a4b5c6d", token: TOKEN } };
  const alias = { event: "$create_alias", properties: { distinct_id: "anon-device-1", alias: "user-42", token: TOKEN } };

  it("rejects $identify and $create_alias under simplified ID merge with a clear code", () => {
    for (const event of [identify, alias]) {
      const rejected = expectRejected(mapAdobeEvent(event, 0, context()));
      expect(rejected.code).toBe("identity_event_requires_original_mode");
      expect(rejected.reason).toContain("identity_mode");
    }
  });

  it("passes them through under original ID merge, without token, never renamed", () => {
    const ctx = context({ identity_mode: "original", event_mapping: { $identify: "nope" } });
    const line = parseEventLine(mapAdobeEvent(identify, 0, ctx));
    expect(line.event).toBe("$identify");
    expect(line.properties).toMatchObject({ $identified_id: "user-42", $anon_id: identify.properties.$anon_id, distinct_id: "user-42", time: NOW_MS });
    expect(line.properties).not.toHaveProperty("token");
    const aliasLine = parseEventLine(mapAdobeEvent(alias, 0, ctx));
    expect(aliasLine).toMatchObject({ event: "$create_alias", properties: { distinct_id: "anon-device-1", alias: "user-42" } });
  });

  it("refuses incomplete identity events under original ID merge", () => {
    const ctx = context({ identity_mode: "original" });
    const noAnon = { event: "$identify", properties: { $identified_id: "user-42" } };
    expect(expectRejected(mapAdobeEvent(noAnon, 0, ctx))).toMatchObject({ code: "invalid_identity_event" });
    expect(expectRejected(mapAdobeEvent({ event: "$create_alias", properties: { alias: "a", distinct_id: "a" } }, 0, ctx)).code).toBe(
      "invalid_identity_event",
    );
    expect(expectRejected(mapAdobeEvent({ event: "$merge", properties: { $distinct_ids: ["a"] } }, 0, ctx)).code).toBe("invalid_identity_event");
    const merge = parseEventLine(mapAdobeEvent({ event: "$merge", properties: { $distinct_ids: ["a", "b"] } }, 0, ctx));
    expect(merge.properties).toMatchObject({ $distinct_ids: ["a", "b"], distinct_id: "a" });
  });

  it("passes $device_id / $user_id through under simplified and fills a missing distinct_id from them", () => {
    const withBoth = parseEventLine(mapAdobeEvent(extensionEvent({ $device_id: "dev-1", $user_id: "user-42" }), 0, context()));
    expect(withBoth.properties).toMatchObject({ $device_id: "dev-1", $user_id: "user-42", distinct_id: "user-42" });
    const userOnly = parseEventLine(mapAdobeEvent(extensionEvent({ distinct_id: undefined, $user_id: "user-9" }), 0, context()));
    expect(userOnly.properties.distinct_id).toBe("user-9");
    const deviceOnly = parseEventLine(mapAdobeEvent(extensionEvent({ distinct_id: undefined, $device_id: "dev-7" }), 0, context()));
    expect(deviceOnly.properties.distinct_id).toBe("$device:dev-7");
    // Original mode does not invent a distinct_id from $device_id: the event is sent user-less.
    const original = parseEventLine(mapAdobeEvent(extensionEvent({ distinct_id: undefined, $device_id: "dev-7" }), 0, context({ identity_mode: "original" })));
    expect(original.properties.distinct_id).toBe("");
  });
});

describe("the merged properties' key order (merged without object spread)", () => {
  it("keeps the spread order: properties first, custom keys after, a custom key replacing a property in its place, token left out", () => {
    const result = mapAdobeEvent(
      {
        event: "Order",
        properties: { token: "t", time: String(SECONDS), distinct_id: "u-1", $insert_id: "order-1", plan: "free", page: "/a" },
        custom_properties: { page: "/b", revenue: 3, token: "from-custom" },
      },
      0,
      context(),
    );
    if (!result.ok) throw new Error(`expected a record, got ${result.code}`);
    const { properties } = JSON.parse(result.line) as { properties: Record<string, unknown> };
    expect(Object.keys(properties)).toEqual(["time", "distinct_id", "$insert_id", "plan", "page", "revenue", "ip"]);
    expect(properties.page).toBe("/b");
  });
});
