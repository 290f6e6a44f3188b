import { describe, expect, it } from "vitest";
import * as z from "zod";
import { ValidationError } from "../../../lib/util/errors.js";
import { mapBrazeCurrentsBatch, mapBrazeEvent } from "../../../lib/sources/braze-currents.js";
import {
  FIXTURES_DIR,
  NOW_MS,
  brazeFixtures,
  context,
  expectRecord,
  expectRejected,
  parseEventLine,
  readJson,
} from "./support.js";

/**
 * The expectations here are written from docs/vendors/braze-currents.md §6 (Braze's own
 * Mixpanel connector), independently of lib/sources/braze-currents.ts.
 */
const labels = new Map(
  Object.entries(z.record(z.string(), z.object({ label: z.string() })).parse(readJson(`${FIXTURES_DIR}braze-mixpanel-labels.json`))).map(
    ([type, entry]) => [type, entry.label],
  ),
);
const RENAMES: Record<string, string> = { device_model: "$device", os_version: "$os", content_card_id: "card_id" };

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** What Braze's connector sends for one HTTP-layout event, built from the reference rules. */
function expectedMixpanelRecord(event: Record<string, unknown>): { event: string; properties: Record<string, unknown> } {
  const user = isObject(event.user) ? event.user : {};
  const source = isObject(event.properties) ? event.properties : {};
  const type = String(event.event_type);
  const properties: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(source)) {
    if (type === "users.behaviors.CustomEvent" && key === "name") continue;
    if (key === "custom_properties" && isObject(value)) {
      for (const [k, v] of Object.entries(value)) properties[`[Custom event property] ${k}`] = v;
      continue;
    }
    if (key === "purchase_properties" && isObject(value)) {
      for (const [k, v] of Object.entries(value)) properties[`[Purchase property] ${k}`] = v;
      continue;
    }
    properties[RENAMES[key] ?? key] = value;
  }
  if (user.device_id !== undefined) properties.device_id = user.device_id;
  Object.assign(properties, {
    $partner_id: "braze",
    distinct_id: user.external_user_id,
    $insert_id: event.id,
    time: Number(event.time) * 1000,
    ip: "0",
  });
  const label = labels.get(type) ?? "";
  return { event: label.replace("{name}", () => String(source.name)), properties };
}

const fixtures = brazeFixtures();

describe("Braze Currents fixtures, field by field", () => {
  it("covers every family and every message channel", () => {
    const types = new Set(fixtures.map((fixture) => String(fixture.event.event_type)));
    for (const family of ["users.behaviors.", "users.campaigns.", "users.canvas."]) {
      expect([...types].some((type) => type.startsWith(family)), family).toBe(true);
    }
    for (const channel of ["email", "pushnotification", "sms", "contentcard", "inappmessage", "webhook", "whatsapp"]) {
      expect([...types].some((type) => type.startsWith(`users.messages.${channel}.`)), channel).toBe(true);
    }
  });

  it.each(fixtures.map((fixture) => [fixture.file, fixture.event] as const))("%s", (_file, event) => {
    const [item, ...rest] = mapBrazeCurrentsBatch({ events: [event] }, context());
    expect(rest).toHaveLength(0);
    const line = parseEventLine(item);
    expect(line).toEqual(expectedMixpanelRecord(event));
    expect(line.properties).not.toHaveProperty("user_id");
    expect(line.properties).not.toHaveProperty("timezone");
    expect(line.properties).not.toHaveProperty("token");
  });
});

describe("Braze Currents: exact records for two hand-checked fixtures", () => {
  it("email Send", () => {
    const event = readJson(`${FIXTURES_DIR}users/messages/email/Send.json`);
    expect(parseEventLine(mapBrazeEvent(event, 0, context()))).toEqual({
      event: "Email Send",
      properties: {
        app_group_id: "bf5ecc9c-f11e-4049-8991-3e777fe7507e",
        campaign_id: "919e85b9-b570-4020-a510-6dcb2c6a45f1",
        campaign_name: "Onboarding Day 3",
        canvas_id: "998025fd-51cf-4784-b712-b04233b04d84",
        canvas_name: "New User Journey",
        canvas_step_id: "f0f9dcda-f8bf-4dc2-a974-0828a664d184",
        canvas_step_name: "Delay 1 Day",
        canvas_variation_id: "8fde9263-093e-43fe-aaa1-20b20a3a534e",
        canvas_variation_name: "Control",
        dispatch_id: "fa8fd58b521e5a7168f2e14d",
        email_address: "li.wei@example.net",
        ip_pool: "marketing",
        message_extras: "message extras b7e0",
        message_variation_id: "db45a000-86ca-4d41-b1e6-38c90efcb7a5",
        message_variation_name: "Variant 2",
        send_id: "send-63b83f",
        device_id: "device-f8f145",
        $partner_id: "braze",
        distinct_id: "user-7915",
        $insert_id: "1c49eb48-f46c-49f8-bc2c-91cd586944d3",
        time: 1795301370000,
        ip: "0",
      },
    });
  });

  it("custom event", () => {
    const event = readJson(`${FIXTURES_DIR}users/behaviors/CustomEvent.json`);
    expect(parseEventLine(mapBrazeEvent(event, 0, context()))).toEqual({
      event: "[Braze Custom Event] Added To Cart",
      properties: {
        ad_id: "68a50082-a0e5-459e-9dfb-f4a2f9b4ac7a",
        ad_id_type: "ad id type a3df",
        ad_tracking_enabled: false,
        app_group_id: "065d4797-7ad1-4b98-9d0d-2727328767a7",
        app_id: "36e2e88b-5d8b-4136-b4aa-d03f16648eaa",
        "[Custom event property] listProperty": ["listProperty db8e"],
        "[Custom event property] numberProperty": 13,
        "[Custom event property] stringProperty": "stringProperty 6377",
        $device: "Pixel 8",
        $os: "Android 14",
        platform: "android",
        device_id: "device-02dd41",
        $partner_id: "braze",
        distinct_id: "user-6872",
        $insert_id: "6d56acb1-9c5d-41ba-8f7e-c94998843c72",
        time: 1795300137000,
        ip: "0",
      },
    });
  });
});

/** A minimal event of a given type, for the table-driven and edge-case tests. */
function brazeEvent(overrides: Record<string, unknown> = {}, properties: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    event_type: "users.messages.email.Send",
    id: "11111111-2222-4333-8444-555555555555",
    time: Math.floor(NOW_MS / 1000) - 60,
    user: { external_user_id: "user-1", user_id: "braze-1" },
    properties,
    ...overrides,
  };
}

describe("Braze label table", () => {
  it.each([...labels.entries()])("%s → %s", (eventType, label) => {
    const line = parseEventLine(mapBrazeEvent(brazeEvent({ event_type: eventType }, { name: "Signed Up" }), 0, context()));
    expect(line.event).toBe(label.replace("{name}", "Signed Up"));
  });

  it.each([
    ["users_campaigns_abort", "Campaign Abort"],
    ["users_canvas_abort", "Canvas Abort"],
    ["users.campaigns.Abort", "Campaign Abort"],
    ["users.canvas.Abort", "Canvas Abort"],
  ])("legacy abort spelling %s → %s", (eventType, label) => {
    const line = parseEventLine(mapBrazeEvent(brazeEvent({ event_type: eventType }, { abort_type: "x", abort_log: "y" }), 0, context()));
    expect(line.event).toBe(label);
    expect(line.properties.abort_log).toBe("y");
  });

  it("keeps a custom event name literal, including replacement patterns", () => {
    const name = "Paid $& in full $1";
    const line = parseEventLine(mapBrazeEvent(brazeEvent({ event_type: "users.behaviors.CustomEvent" }, { name }), 0, context()));
    expect(line.event).toBe(`[Braze Custom Event] ${name}`);
  });
});

describe("Braze Currents edge cases", () => {
  it.each([
    ["no user object", { user: undefined }],
    ["no external_user_id", { user: { user_id: "braze-1" } }],
    ["null external_user_id", { user: { user_id: "braze-1", external_user_id: null } }],
    ["blank external_user_id", { user: { user_id: "braze-1", external_user_id: "  " } }],
  ])("drops events of users without an external id (%s)", (_case, overrides) => {
    const input = brazeEvent(overrides);
    const rejected = expectRejected(mapBrazeEvent(input, 3, context()));
    expect(rejected).toMatchObject({ index: 3, code: "no_external_user_id", dropped: true });
    expect(rejected.payload).toBe(input);
  });

  it("keeps unicode in names, keys and values", () => {
    const input = brazeEvent(
      { event_type: "users.behaviors.CustomEvent", user: { external_user_id: "usuário-日本-🚀" } },
      { name: "Añadido al carrito 🛒", custom_properties: { "größe": "groß", "名前": "東京" } },
    );
    const line = parseEventLine(mapBrazeEvent(input, 0, context()));
    expect(line.event).toBe("[Braze Custom Event] Añadido al carrito 🛒");
    expect(line.properties.distinct_id).toBe("usuário-日本-🚀");
    expect(line.properties["[Custom event property] größe"]).toBe("groß");
    expect(line.properties["[Custom event property] 名前"]).toBe("東京");
  });

  it("rejects times more than an hour in the future, accepts them within the hour", () => {
    const nowSeconds = Math.floor(NOW_MS / 1000);
    const future = expectRejected(mapBrazeEvent(brazeEvent({ time: nowSeconds + 3601 }), 0, context()));
    expect(future.code).toBe("invalid_time");
    expect(future.reason).toMatch(/future/);
    expect(future.dropped).toBeUndefined();
    const soon = parseEventLine(mapBrazeEvent(brazeEvent({ time: nowSeconds + 1800 }), 0, context()));
    expect(soon.properties.time).toBe((nowSeconds + 1800) * 1000);
  });

  it.each([0, 31_535_999, -5])("rejects time %s (before 1971)", (time) => {
    const rejected = expectRejected(mapBrazeEvent(brazeEvent({ time }), 0, context()));
    expect(rejected.code).toBe("invalid_time");
    expect(rejected.reason).toMatch(/1971/);
  });

  it("rejects a missing time", () => {
    expect(expectRejected(mapBrazeEvent(brazeEvent({ time: undefined }), 0, context())).code).toBe("missing_time");
  });

  it("rejects custom property sets that push an event over 254 properties, at the exact boundary", () => {
    // Fixed keys: $partner_id, distinct_id, $insert_id, time, ip.
    const customEvent = (count: number) =>
      brazeEvent(
        { event_type: "users.behaviors.CustomEvent", user: { external_user_id: "user-1" } },
        { name: "Big", custom_properties: Object.fromEntries(Array.from({ length: count }, (_, i) => [`p${i}`, i])) },
      );
    const fits = parseEventLine(mapBrazeEvent(customEvent(249), 0, context()));
    expect(Object.keys(fits.properties)).toHaveLength(254);
    const tooMany = expectRejected(mapBrazeEvent(customEvent(250), 0, context()));
    expect(tooMany.code).toBe("too_many_properties");
    expect(tooMany.reason).toContain("255");
    expect(expectRejected(mapBrazeEvent(customEvent(1000), 0, context())).code).toBe("too_many_properties");
  });

  it("rejects unknown event types without failing the batch or dropping them silently", () => {
    const items = mapBrazeCurrentsBatch(
      { events: [brazeEvent({ event_type: "users.messages.carrierpigeon.Send" }), brazeEvent()] },
      context(),
    );
    const rejected = expectRejected(items[0]);
    expect(rejected.code).toBe("unsupported_event_type");
    expect(rejected.reason).toContain("users.messages.carrierpigeon.Send");
    expect(rejected.dropped).toBeUndefined();
    expect(expectRecord(items[1]).index).toBe(1);
  });

  it("passes unknown fields through (Avro backward compatibility, §1)", () => {
    const line = parseEventLine(
      mapBrazeEvent(brazeEvent({ brand_new_top_level: 7, user: { external_user_id: "u", new_user_field: "n" } }, { new_prop: [1, 2] }), 0, context()),
    );
    expect(line.properties).toMatchObject({ brand_new_top_level: 7, new_user_field: "n", new_prop: [1, 2] });
  });

  it("keeps fields named like Object.prototype members as plain fields", () => {
    const ctx = context({ event_mapping: { "Email Send": "email_sent" } });
    const line = parseEventLine(mapBrazeEvent(brazeEvent({}, { constructor: "c", toString: "t", hasOwnProperty: 1 }), 0, ctx));
    expect(line.properties).toMatchObject({ constructor: "c", toString: "t", hasOwnProperty: 1 });
    const custom = brazeEvent({ event_type: "users.behaviors.CustomEvent" }, { name: "constructor" });
    expect(parseEventLine(mapBrazeEvent(custom, 0, ctx)).event).toBe("[Braze Custom Event] constructor");
  });

  it("accepts purchase properties as a JSON-encoded string (Avro layout) and rejects a broken one", () => {
    const purchase = (purchase_properties: unknown) =>
      brazeEvent({ event_type: "users.behaviors.Purchase" }, { product_id: "sku", price: 1.5, currency: "EUR", purchase_properties });
    const line = parseEventLine(mapBrazeEvent(purchase('{"size":"L","qty":2}'), 0, context()));
    expect(line.properties).toMatchObject({ "[Purchase property] size": "L", "[Purchase property] qty": 2, price: 1.5 });
    expect(line.properties).not.toHaveProperty("purchase_properties");
    expect(expectRejected(mapBrazeEvent(purchase("{not json"), 0, context())).code).toBe("invalid_custom_properties");
    expect(expectRejected(mapBrazeEvent(purchase("[1,2]"), 0, context())).code).toBe("invalid_custom_properties");
  });

  it("rejects a __proto__ key in custom or purchase properties, object or JSON text, instead of dropping it", () => {
    // As the intake parses it: JSON.parse makes "__proto__" an own key.
    const custom = (custom_properties: unknown) =>
      brazeEvent({ event_type: "users.behaviors.CustomEvent" }, { name: "Added", custom_properties });
    const purchase = (purchase_properties: unknown) =>
      brazeEvent({ event_type: "users.behaviors.Purchase" }, { product_id: "sku", price: 1, currency: "EUR", purchase_properties });
    const cases: [Record<string, unknown>, string][] = [
      [custom(JSON.parse('{"size":"L","__proto__":{"x":1}}')), "properties.custom_properties.__proto__"],
      [custom('{"size":"L","__proto__":{"x":1}}'), "properties.custom_properties.__proto__"],
      [purchase('{"gift":{"__proto__":1}}'), "properties.purchase_properties.gift.__proto__"],
      [brazeEvent({}, JSON.parse('{"__proto__":"x"}')), "properties.__proto__"],
      [brazeEvent(JSON.parse('{"user":{"external_user_id":"u","__proto__":{}}}')), "user.__proto__"],
    ];
    const items = mapBrazeCurrentsBatch({ events: [...cases.map(([event]) => event), custom({ size: "L" })] }, context());
    cases.forEach(([event, where], index) => {
      const rejected = expectRejected(items[index]);
      expect(rejected).toMatchObject({ index, code: "invalid_property_name", payload: event });
      expect(rejected.dropped).toBeUndefined();
      expect(rejected.reason).toContain(where);
    });
    expect(parseEventLine(items[cases.length]).properties["[Custom event property] size"]).toBe("L");
  });

  it("maps a property holding U+FFFF to a normal record (the envelope, not the mapper, deals with it)", () => {
    const input = brazeEvent({ event_type: "users.behaviors.CustomEvent" }, { name: "Added", custom_properties: { note: "a\uFFFFb\uFFFE" } });
    const line = parseEventLine(mapBrazeEvent(input, 0, context()));
    expect(line.properties["[Custom event property] note"]).toBe("a\uFFFFb\uFFFE");
  });

  it("rejects a custom event without a name and an event without event_type", () => {
    expect(expectRejected(mapBrazeEvent(brazeEvent({ event_type: "users.behaviors.CustomEvent" }), 0, context())).code).toBe(
      "missing_custom_event_name",
    );
    const noType = expectRejected(mapBrazeEvent(brazeEvent({ event_type: undefined }), 0, context()));
    expect(noType.code).toBe("invalid_shape");
    expect(noType.reason).toContain("event_type");
    expect(expectRejected(mapBrazeEvent("not an event", 0, context())).code).toBe("invalid_shape");
  });

  it("derives a stable $insert_id when Braze's id is missing, so a resend dedupes", () => {
    const first = parseEventLine(mapBrazeEvent(brazeEvent({ id: undefined }), 0, context()));
    const again = parseEventLine(mapBrazeEvent(brazeEvent({ id: undefined }), 0, context()));
    expect(first.properties.$insert_id).toMatch(/^[0-9a-f]{36}$/);
    expect(again.properties.$insert_id).toBe(first.properties.$insert_id);
  });
});

describe("Braze allow-list and renames from stage config", () => {
  it("drops event types outside braze.event_types, visibly", () => {
    const ctx = context({ braze: { event_types: ["users.messages.email.Send", "users_canvas_abort"] } });
    const items = mapBrazeCurrentsBatch(
      {
        events: [
          brazeEvent(),
          brazeEvent({ event_type: "users.messages.pushnotification.Send" }),
          brazeEvent({ event_type: "users.canvas.Abort" }),
        ],
      },
      ctx,
    );
    expect(parseEventLine(items[0]).event).toBe("Email Send");
    expect(expectRejected(items[1])).toMatchObject({ index: 1, code: "event_type_not_enabled", dropped: true });
    expect(parseEventLine(items[2]).event).toBe("Canvas Abort");
  });

  it("still rejects unknown types as unsupported (not as not-enabled) under an allow-list", () => {
    const ctx = context({ braze: { event_types: ["users.messages.email.Send"] } });
    expect(expectRejected(mapBrazeEvent(brazeEvent({ event_type: "users.new.Thing" }), 0, ctx)).code).toBe("unsupported_event_type");
  });

  it("applies event_mapping after labeling", () => {
    const ctx = context({ event_mapping: { "Email Send": "email_sent", "[Braze Custom Event] Signed Up": "signup" } });
    expect(parseEventLine(mapBrazeEvent(brazeEvent(), 0, ctx)).event).toBe("email_sent");
    const custom = brazeEvent({ event_type: "users.behaviors.CustomEvent" }, { name: "Signed Up" });
    expect(parseEventLine(mapBrazeEvent(custom, 0, ctx)).event).toBe("signup");
    expect(parseEventLine(mapBrazeEvent(brazeEvent({ event_type: "users.canvas.Entry" }), 0, ctx)).event).toBe("Canvas Entry");
  });
});

describe("Braze batch envelope", () => {
  it.each([[{ events: [] }], [undefined], [null], [[]]])("treats %j as an empty no-op", (body) => {
    expect(mapBrazeCurrentsBatch(body, context())).toEqual([]);
  });

  it.each([[{ event: [] }], ["events"], [[brazeEvent()]], [{ events: "nope" }], [42]])("refuses %j as a whole", (body) => {
    expect(() => mapBrazeCurrentsBatch(body, context())).toThrow(ValidationError);
  });

  it("keeps per-event indexes in a mixed batch", () => {
    const items = mapBrazeCurrentsBatch(
      { events: [brazeEvent(), brazeEvent({ user: {} }), brazeEvent({ time: "soon" }), brazeEvent({ event_type: "users.canvas.Entry" })] },
      context(),
    );
    expect(items.map((item) => [item.index, item.ok])).toEqual([
      [0, true],
      [1, false],
      [2, false],
      [3, true],
    ]);
  });
});

describe("the record line's key order (properties built once from entries)", () => {
  it("keeps the order of the field-by-field assignments: extras, user, properties, prefixed, then the fixed fields", () => {
    const event = {
      event_type: "users.behaviors.CustomEvent",
      id: "order-1",
      time: NOW_MS / 1000 - 60,
      extra_top: "t",
      platform: "from-top",
      user: { external_user_id: "u-1", device_id: "d-1", timezone: "UTC", device_model: "Pixel", user_extra: 1 },
      properties: {
        name: "Added To Cart",
        platform: "from-properties",
        os_version: "Android 14",
        custom_properties: { b: 2, a: 1 },
        $device: "explicit",
      },
    };
    const result = mapBrazeEvent(event, 0, context());
    if (!result.ok) throw new Error(`expected a record, got ${result.code}`);
    const { properties } = JSON.parse(result.line) as { properties: Record<string, unknown> };
    // A key set again later keeps its first place and takes the later value (platform, $device).
    expect(Object.keys(properties)).toEqual([
      "extra_top",
      "platform",
      "$device",
      "user_extra",
      "$os",
      "[Custom event property] b",
      "[Custom event property] a",
      "device_id",
      "$partner_id",
      "distinct_id",
      "$insert_id",
      "time",
      "ip",
    ]);
    expect(properties).toMatchObject({ platform: "from-properties", $device: "explicit", device_id: "d-1", $insert_id: "order-1" });
  });
});

describe("hostile custom properties", () => {
  it("refuses an event with 300k custom properties on its own, without throwing", () => {
    const custom = Object.fromEntries(Array.from({ length: 300_000 }, (_, i) => [`p${i}`, i]));
    const event = {
      event_type: "users.behaviors.CustomEvent",
      id: "many-1",
      time: NOW_MS / 1000 - 60,
      user: { external_user_id: "u-1" },
      properties: { name: "Huge", custom_properties: custom },
    };
    const result = mapBrazeEvent(event, 0, context());
    expect(result.ok ? "ok" : result.code).toBe("too_many_properties");
  });
});
