import { PutObjectCommand } from "@aws-sdk/client-s3";
import avro from "avsc";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { avroFile } from "../unit/sources/avro-support.js";
import { eventually } from "../support/eventually.js";

/**
 * Characters outside the Basic Multilingual Plane (emoji are surrogate pairs in JS strings)
 * through the real queue server (fauxqs refuses them raw, as some SQS implementations do)
 * to the strict local Mixpanel, on every intake route and through the Avro reader.
 */
let stack: LocalStack;
const NOW_S = () => Math.floor(Date.now() / 1000);
const CART = "🛒";
const MIXED = `caf\u00e9 ${CART} 𝄞 👩‍👩‍👧 \u{10FFFD}`;
/** Lone surrogates: JSON.stringify writes them as \\uXXXX escapes, so they survive too. */
const LONE = "a\uD800b\uDFFFc";

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${stack.intakeUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${stack.intakeToken}`, ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}


beforeAll(async () => {
  stack = await startLocalStack({ visibilityTimeoutSeconds: 2 });
});
afterAll(() => stack.stop());
beforeEach(() => stack.sandbox?.reset());

describe("non-BMP characters reach Mixpanel unchanged on every route", () => {
  it("native events: in the name, a key and a value, next to a plain event of the same batch", async () => {
    const response = await post("/v1/events", [
      { event: `Checkout ${CART}`, properties: { distinct_id: `user-${CART}`, time: NOW_S(), [`item ${CART}`]: MIXED, lone: LONE } },
      { event: "Plain", properties: { distinct_id: "user-plain", time: NOW_S() } },
    ]);
    expect(response.status).toBe(202);
    expect(response.json).toMatchObject({ accepted: 2, rejected: 0 });
    const arrived = await eventually(() => stack.sandbox?.events.find((e) => e.event === `Checkout ${CART}`));
    expect(arrived.properties.distinct_id).toBe(`user-${CART}`);
    expect(arrived.properties[`item ${CART}`]).toBe(MIXED);
    expect(arrived.properties.lone).toBe(LONE);
    await eventually(() => stack.sandbox?.events.find((e) => e.event === "Plain"));
  });

  it("Braze Currents: a custom event name and a custom property", async () => {
    const response = await post(
      "/v1/braze/currents",
      {
        events: [
          {
            event_type: "users.behaviors.CustomEvent",
            id: "b7c4f0a2-1111-4c1e-9f00-00000000e001",
            time: NOW_S(),
            user: { external_user_id: "braze-emoji-user" },
            properties: { name: `Added ${CART}`, custom_properties: { [`note ${CART}`]: MIXED } },
          },
        ],
      },
      { "braze-currents-version": "1" },
    );
    expect(response.status).toBe(202);
    const arrived = await eventually(() => stack.sandbox?.events.find((e) => e.properties.distinct_id === "braze-emoji-user"));
    expect(arrived.event).toBe(`[Braze Custom Event] Added ${CART}`);
    expect(arrived.properties[`[Custom event property] note ${CART}`]).toBe(MIXED);
  });

  it("Adobe events", async () => {
    const response = await post("/v1/adobe/events", {
      event: `Viewed ${CART}`,
      properties: { distinct_id: "adobe-emoji-user", time: NOW_S(), $insert_id: "adobe-emoji-1", label: MIXED },
    });
    expect(response.status).toBe(202);
    const arrived = await eventually(() => stack.sandbox?.events.find((e) => e.properties.distinct_id === "adobe-emoji-user"));
    expect(arrived.event).toBe(`Viewed ${CART}`);
    expect(arrived.properties.label).toBe(MIXED);
  });

  it("profiles and groups: $set values and names", async () => {
    const profile = await post("/v1/profiles", [{ $distinct_id: `p-${CART}`, $set: { [`fav ${CART}`]: MIXED } }]);
    expect(profile.status).toBe(202);
    const group = await post("/v1/groups", [{ $group_key: "company", $group_id: `g-${CART}`, $set: { motto: MIXED } }]);
    expect(group.status).toBe(202);
    const stored = await eventually(() => stack.sandbox?.profiles.get(`p-${CART}`));
    expect(stored[`fav ${CART}`]).toBe(MIXED);
    const storedGroup = await eventually(() => stack.sandbox?.groups.get(`company:g-${CART}`));
    expect(storedGroup.motto).toBe(MIXED);
  });

  it("Braze Avro files: the reader queues them instead of losing the file", async () => {
    const schema = {
      type: "record",
      name: "CustomEvent",
      fields: [
        { name: "id", type: "string" },
        { name: "external_user_id", type: ["null", "string"], default: null },
        { name: "time", type: "int" },
        { name: "name", type: "string" },
        { name: "properties", type: "string" },
      ],
    } as avro.Schema;
    const record = {
      id: "b7c4f0a2-2222-4c1e-9f00-00000000e002",
      external_user_id: "avro-emoji-user",
      time: NOW_S(),
      name: `Avro ${CART}`,
      properties: JSON.stringify({ note: MIXED }),
    };
    await stack.s3.send(
      new PutObjectCommand({
        Bucket: stack.currentsBucket,
        Key: "currents/dataexport.prod-01.S3.integration.emoji/event_type=users.behaviors.CustomEvent/date=2026-11-22-12/300/0/emoji.avro",
        Body: await avroFile(schema, [record]),
      }),
    );
    const arrived = await eventually(() => stack.sandbox?.events.find((e) => e.properties.distinct_id === "avro-emoji-user"));
    expect(arrived.event).toBe(`[Braze Custom Event] Avro ${CART}`);
    expect(arrived.properties["[Custom event property] note"]).toBe(MIXED);
  });
});
