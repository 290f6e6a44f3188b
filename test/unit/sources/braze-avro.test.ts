import { deflateRawSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../../lib/util/errors.js";
import {
  brazeAvroRecordToEvent,
  brazeEventTypeFromKey,
  decodeAvroContainer,
  mapBrazeAvroFile,
} from "../../../lib/sources/braze-avro.js";
import { mapBrazeEvent } from "../../../lib/sources/braze-currents.js";
import { avroFile, currentsKey, flattenHttpEvent, schemaFor } from "./avro-support.js";
import { NOW_MS, brazeFixtures, context, expectRejected, parseEventLine } from "./support.js";

const fixtures = brazeFixtures();

describe("Braze Currents Avro files", () => {
  it.each(fixtures.map((fixture) => [fixture.file, fixture.event] as const))(
    "%s: the Avro layout maps to the same Mixpanel record as the HTTP layout",
    async (_file, event) => {
      const eventType = String(event.event_type);
      const flat = flattenHttpEvent(event);
      const bytes = await avroFile(schemaFor("Event", [flat], ["sdk_version", "gender"]), [flat]);
      const [fromAvro, ...rest] = await mapBrazeAvroFile(bytes, currentsKey(eventType), context());
      expect(rest).toHaveLength(0);
      const fromHttp = mapBrazeEvent(event, 0, context());
      expect(parseEventLine(fromAvro)).toEqual(parseEventLine(fromHttp));
      // Null optional fields are absent, not null properties.
      expect(parseEventLine(fromAvro).properties).not.toHaveProperty("sdk_version");
    },
  );

  it("maps every record of a multi-event file with its position as index", async () => {
    const records = [1, 2, 3].map((n) => ({
      id: `00000000-0000-4000-8000-00000000000${n}`,
      user_id: `braze-${n}`,
      external_user_id: n === 2 ? null : `user-${n}`,
      time: Math.floor(NOW_MS / 1000) - n,
      email_address: `u${n}@example.org`,
    }));
    const bytes = await avroFile(schemaFor("Send", records), records);
    const items = await mapBrazeAvroFile(bytes, currentsKey("users.messages.email.Send"), context());
    expect(items.map((item) => [item.index, item.ok])).toEqual([
      [0, true],
      [1, false],
      [2, true],
    ]);
    expect(expectRejected(items[1])).toMatchObject({ code: "no_external_user_id", dropped: true });
    expect(parseEventLine(items[2]).properties).toMatchObject({ distinct_id: "user-3", email_address: "u3@example.org" });
  });

  it("reads deflate-compressed files", async () => {
    const record = { id: "a8a8a8a8-1111-4222-8333-444455556666", user_id: "b", external_user_id: "u", time: Math.floor(NOW_MS / 1000) };
    const bytes = await avroFile(schemaFor("Send", [record]), [record], { codec: "deflate" });
    const [item] = await mapBrazeAvroFile(bytes, currentsKey("users.messages.sms.Send"), context());
    expect(parseEventLine(item).event).toBe("SMS Send");
  });

  it("names an unsupported codec instead of guessing", async () => {
    const record = { id: "x", user_id: "b", time: 1 };
    const bytes = await avroFile(schemaFor("Send", [record]), [record], {
      codec: "snappy",
      codecs: { snappy: (buffer, callback) => callback(null, deflateRawSync(buffer)) },
    });
    await expect(decodeAvroContainer(bytes)).rejects.toThrow(/snappy/);
    await expect(decodeAvroContainer(bytes)).rejects.toBeInstanceOf(ValidationError);
  });

  it("refuses bytes that are not an Avro container", async () => {
    await expect(decodeAvroContainer(Buffer.from('{"events":[]}'))).rejects.toBeInstanceOf(ValidationError);
  });

  it("refuses a key without event_type=", async () => {
    const record = { id: "x", user_id: "b", time: 1 };
    const bytes = await avroFile(schemaFor("Send", [record]), [record]);
    await expect(mapBrazeAvroFile(bytes, "currents/some-file.avro", context())).rejects.toThrow(/event_type/);
  });

  it("rejects a custom event whose properties string is not JSON, keeping the rest", async () => {
    const records = [
      { id: "c1c1c1c1-1111-4222-8333-444455556666", user_id: "b", external_user_id: "u", time: Math.floor(NOW_MS / 1000), name: "A", properties: "{broken" },
      { id: "c2c2c2c2-1111-4222-8333-444455556666", user_id: "b", external_user_id: "u", time: Math.floor(NOW_MS / 1000), name: "B", properties: '{"k":1}' },
    ];
    const bytes = await avroFile(schemaFor("CustomEvent", records), records);
    const items = await mapBrazeAvroFile(bytes, currentsKey("users.behaviors.CustomEvent"), context());
    expect(expectRejected(items[0]).code).toBe("invalid_custom_properties");
    const line = parseEventLine(items[1]);
    expect(line.event).toBe("[Braze Custom Event] B");
    expect(line.properties["[Custom event property] k"]).toBe(1);
  });

  it("rejects a custom event whose properties JSON has a __proto__ key, keeping the rest", async () => {
    const time = Math.floor(NOW_MS / 1000);
    const records = [
      { id: "e1e1e1e1-1111-4222-8333-444455556666", user_id: "b", external_user_id: "u", time, name: "A", properties: '{"k":1,"__proto__":{"x":1}}' },
      { id: "e2e2e2e2-1111-4222-8333-444455556666", user_id: "b", external_user_id: "u", time, name: "B", properties: '{"k":2}' },
    ];
    const bytes = await avroFile(schemaFor("CustomEvent", records), records);
    const items = await mapBrazeAvroFile(bytes, currentsKey("users.behaviors.CustomEvent"), context());
    expect(expectRejected(items[0])).toMatchObject({ index: 0, code: "invalid_property_name" });
    expect(parseEventLine(items[1]).properties["[Custom event property] k"]).toBe(2);
  });

  it("keeps a record field named __proto__ through the reshaping, so the mapper refuses it", () => {
    const record: unknown = JSON.parse(`{"id":"i","time":${Math.floor(NOW_MS / 1000)},"external_user_id":"u","__proto__":{"x":1},"campaign_id":"c"}`);
    const event = brazeAvroRecordToEvent(record, "users.messages.email.Send");
    expect(expectRejected(mapBrazeEvent(event, 0, context()))).toMatchObject({ code: "invalid_property_name", reason: expect.stringContaining("properties.__proto__") });
  });

  it("names legacy abort files from their key", async () => {
    const record = { id: "d1d1d1d1-1111-4222-8333-444455556666", user_id: "b", external_user_id: "u", time: Math.floor(NOW_MS / 1000), abort_type: "t" };
    const bytes = await avroFile(schemaFor("Abort", [record]), [record]);
    const [item] = await mapBrazeAvroFile(bytes, currentsKey("users_canvas_abort"), context());
    expect(parseEventLine(item).event).toBe("Canvas Abort");
  });

  it("reads the event type from Braze's key layout", () => {
    expect(brazeEventTypeFromKey(currentsKey("users.messages.whatsapp.Read"))).toBe("users.messages.whatsapp.Read");
    expect(brazeEventTypeFromKey("event_type=users.canvas.Entry/date=2026-11-21-18/1/0/f.avro")).toBe("users.canvas.Entry");
    expect(brazeEventTypeFromKey("currents/xevent_type=users.canvas.Entry/f.avro")).toBeUndefined();
  });

  it("reshapes a flat record into the HTTP layout", () => {
    expect(
      brazeAvroRecordToEvent(
        { id: "i", time: 5, user_id: "b", external_user_id: "u", timezone: "UTC", device_id: "d", price: 2.5, properties: "{}", gender: null },
        "users.behaviors.Purchase",
      ),
    ).toEqual({
      event_type: "users.behaviors.Purchase",
      id: "i",
      time: 5,
      user: { user_id: "b", external_user_id: "u", timezone: "UTC", device_id: "d" },
      properties: { price: 2.5, purchase_properties: "{}" },
    });
  });
});
