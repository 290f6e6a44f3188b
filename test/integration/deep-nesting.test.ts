import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { rejectedBatchSchema, type RejectedBatch } from "../../lib/queue/rejected-store.js";
import { MAX_JSON_DEPTH } from "../../lib/util/json.js";
import { eventually } from "../support/eventually.js";

/**
 * Hostile nesting on the update and Adobe routes, through the real handler and queue: an item
 * nested deeper than Mixpanel keeps is refused on its own (too_deep, kept in the rejected store),
 * the rest of the batch goes on; a body nested deeper than MAX_JSON_DEPTH is refused whole
 * (400 too_deep) before it is parsed.
 */
let stack: LocalStack;
const NOW_S = () => Math.floor(Date.now() / 1000);
/** Deeper than Mixpanel's values go (MAX_CONTAINER_DEPTH), within what a body may nest. */
const ITEM_LEVELS = 40;
const nested = (levels: number) => `${"[".repeat(levels)}${"]".repeat(levels)}`;

async function postRaw(path: string, body: string) {
  const response = await fetch(`${stack.intakeUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${stack.intakeToken}` },
    body,
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}


async function rejectedFor(source: string, correlationId: unknown): Promise<RejectedBatch | undefined> {
  const listed = await stack.s3.send(new ListObjectsV2Command({ Bucket: stack.rejectedBucket, Prefix: `rejected/${source}/` }));
  for (const object of listed.Contents ?? []) {
    if (!object.Key?.includes(String(correlationId))) continue;
    const got = await stack.s3.send(new GetObjectCommand({ Bucket: stack.rejectedBucket, Key: object.Key }));
    return rejectedBatchSchema.parse(JSON.parse((await got.Body?.transformToString()) ?? ""));
  }
  return undefined;
}

beforeAll(async () => {
  stack = await startLocalStack({ visibilityTimeoutSeconds: 2 });
});
afterAll(() => stack.stop());

describe("deep nesting is one bad item, never a 503", () => {
  for (const [path, source, deep, good, arrived] of [
    [
      "/v1/profiles",
      "profiles",
      `{"$distinct_id":"a","$set":{"x":${nested(ITEM_LEVELS)}}}`,
      `{"$distinct_id":"deep-ok-profile","$set":{"plan":"pro"}}`,
      () => stack.sandbox?.profiles.get("deep-ok-profile"),
    ],
    [
      "/v1/groups",
      "groups",
      `{"$group_key":"company","$group_id":"a","$set":{"x":${nested(ITEM_LEVELS)}}}`,
      `{"$group_key":"company","$group_id":"deep-ok-group","$set":{"plan":"pro"}}`,
      () => stack.sandbox?.groups.get("company:deep-ok-group"),
    ],
    [
      "/v1/adobe/events",
      "adobe",
      `{"event":"Deep","properties":{"distinct_id":"a","x":${nested(ITEM_LEVELS)}}}`,
      `{"event":"Deep OK","properties":{"distinct_id":"deep-ok-adobe","time":${NOW_S()}}}`,
      () => stack.sandbox?.events.find((e) => e.event === "Deep OK"),
    ],
  ] as const) {
    it(`${path}: rejects the deep item, queues the good one`, async () => {
      const response = await postRaw(path, `[${deep},${good}]`);
      expect(response.status).toBe(202);
      expect(response.json).toMatchObject({ accepted: 1, rejected: 1, errors: [{ index: 0, code: "too_deep" }] });
      await eventually((): unknown => arrived());
      const batch = await eventually(() => rejectedFor(source, response.json.correlationId));
      expect(batch.items.map((item) => [item.index, item.code])).toEqual([[0, "too_deep"]]);
      // The payload is kept as received.
      let levels = 0;
      let inner: unknown = batch.items[0]?.payload;
      while (inner !== null && typeof inner === "object") {
        inner = Array.isArray(inner) ? inner[0] : "x" in inner ? inner.x : "properties" in inner ? inner.properties : "$set" in inner ? inner.$set : undefined;
        levels++;
      }
      expect(levels).toBeGreaterThan(ITEM_LEVELS);
    });
  }

  for (const path of ["/v1/events", "/v1/profiles", "/v1/groups", "/v1/adobe/events", "/v1/braze/currents"]) {
    it(`${path}: a body nested deeper than ${MAX_JSON_DEPTH} levels is refused whole, before parsing`, async () => {
      const response = await postRaw(path, `[{"x":${nested(100_000)}}]`);
      expect(response.status).toBe(400);
      expect(response.json).toMatchObject({ error: "too_deep" });
      // A deep string is text, not nesting.
      const text = await postRaw(path, JSON.stringify([{ x: "[".repeat(100_000) }]));
      expect(text.json.error).not.toBe("too_deep");
    });
  }

  it("an Adobe row key that builds a deep path is refused the same way", async () => {
    const key = Array.from({ length: 5000 }, () => "a").join(".");
    const response = await postRaw("/v1/adobe/events", JSON.stringify({ event: "Rows", properties: { distinct_id: "rows" }, custom_properties: [{ key, value: 1 }] }));
    expect(response.status).toBe(200);
    expect(response.json).toMatchObject({ accepted: 0, rejected: 1, errors: [{ index: 0, code: "too_deep" }] });
  });
});
