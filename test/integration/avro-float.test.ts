import { PutObjectCommand } from "@aws-sdk/client-s3";
import avro from "avsc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { shortestFloat32 } from "../../lib/sources/braze-avro.js";
import { avroFile } from "../unit/sources/avro-support.js";
import { eventually } from "../support/eventually.js";

/**
 * The same Braze Purchase and Location through both transports (custom HTTP and an Avro file with
 * `float` fields, as Braze's schemas declare them) reaches Mixpanel with identical numbers.
 */
let stack: LocalStack;
const NOW_S = Math.floor(Date.now() / 1000);


beforeAll(async () => {
  stack = await startLocalStack({ visibilityTimeoutSeconds: 2 });
});
afterAll(() => stack.stop());

const withoutIds = (properties: Record<string, unknown>) => {
  const { $insert_id: _id, distinct_id: _user, ...rest } = properties;
  return rest;
};

async function sendBoth(eventType: string, flat: Record<string, unknown>, schema: avro.Schema, httpProperties: Record<string, unknown>, tag: string) {
  const response = await fetch(`${stack.intakeUrl}/v1/braze/currents`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${stack.intakeToken}` },
    body: JSON.stringify({
      events: [{ event_type: eventType, id: `${tag}-http-0000-0000-000000000001`, time: NOW_S, user: { external_user_id: `${tag}-http` }, properties: httpProperties }],
    }),
  });
  expect(response.status).toBe(202);
  await stack.s3.send(
    new PutObjectCommand({
      Bucket: stack.currentsBucket,
      Key: `currents/dataexport.prod-01.S3.integration.float/event_type=${eventType}/date=2026-11-22-12/300/0/${tag}.avro`,
      Body: await avroFile(schema, [{ id: `${tag}-avro-0000-0000-000000000001`, time: NOW_S, external_user_id: `${tag}-avro`, ...flat }]),
    }),
  );
  const http = await eventually(() => stack.sandbox?.events.find((e) => e.properties.distinct_id === `${tag}-http`));
  const fromAvro = await eventually(() => stack.sandbox?.events.find((e) => e.properties.distinct_id === `${tag}-avro`));
  return { http, fromAvro };
}

describe("Avro float fields", () => {
  it("Purchase price 3.14 arrives as 3.14 from both transports", async () => {
    const schema = {
      type: "record",
      name: "Purchase",
      fields: [
        { name: "id", type: "string" },
        { name: "time", type: "int" },
        { name: "external_user_id", type: ["null", "string"], default: null },
        { name: "product_id", type: "string" },
        { name: "price", type: "float" },
        { name: "currency", type: "string" },
      ],
    } as avro.Schema;
    const { http, fromAvro } = await sendBoth(
      "users.behaviors.Purchase",
      { product_id: "sku-1", price: 3.14, currency: "USD" },
      schema,
      { product_id: "sku-1", price: 3.14, currency: "USD" },
      "purchase",
    );
    expect(fromAvro.properties.price).toBe(3.14);
    expect(withoutIds(fromAvro.properties)).toEqual(withoutIds(http.properties));
  });

  it("Location coordinates and accuracies (nullable floats) match the HTTP transport", async () => {
    const optionalFloat = (name: string) => ({ name, type: ["null", "float"], default: null });
    const schema = {
      type: "record",
      name: "Location",
      fields: [
        { name: "id", type: "string" },
        { name: "time", type: "int" },
        { name: "external_user_id", type: ["null", "string"], default: null },
        optionalFloat("latitude"),
        optionalFloat("longitude"),
        optionalFloat("altitude"),
        optionalFloat("ll_accuracy"),
        optionalFloat("alt_accuracy"),
      ],
    } as avro.Schema;
    const values = { latitude: 40.7128, longitude: -74.006, altitude: 10.5, ll_accuracy: 0.1, alt_accuracy: 1e-7 };
    const { http, fromAvro } = await sendBoth("users.behaviors.Location", values, schema, values, "location");
    expect(withoutIds(fromAvro.properties)).toEqual(withoutIds(http.properties));
  });
});

describe("shortestFloat32", () => {
  it("gives the shortest decimal that reads back as the same float32, and leaves non-float32 values alone", () => {
    expect(shortestFloat32(Math.fround(3.14))).toBe(3.14);
    expect(shortestFloat32(Math.fround(0.1))).toBe(0.1);
    expect(shortestFloat32(Math.fround(16777217))).toBe(16777216);
    expect(shortestFloat32(Math.fround(3.4028234663852886e38))).toBe(3.4028235e38);
    expect(shortestFloat32(3.14)).toBe(3.14);
    expect(shortestFloat32(Number.NaN)).toBeNaN();
    for (let i = 0; i < 2000; i++) {
      const original = Math.fround((i - 1000) * 1.2345e-3 * 10 ** ((i % 13) - 6));
      const short = shortestFloat32(original);
      expect(Math.fround(short)).toBe(original);
      expect(String(short).replace(/^-|e.*$|\./g, "").replace(/^0+/, "").length).toBeLessThanOrEqual(9);
    }
  });
});
