import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { GetQueueAttributesCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { rejectedBatchSchema, type RejectedBatch } from "../../lib/queue/rejected-store.js";
import { parseQueuedRecords } from "../../lib/records/envelope-v2.js";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { avroFile, schemaFor } from "../unit/sources/avro-support.js";
import { eventually } from "../support/eventually.js";

/**
 * HTTP → intake handler → SQS (fauxqs) → forwarder handler → strict local Mixpanel,
 * through the same local stack `npm start` runs.
 */
let stack: LocalStack;
const NOW_S = () => Math.floor(Date.now() / 1000);

async function post(path: string, body: unknown, token?: string, raw?: string) {
  const response = await fetch(`${stack.intakeUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token ?? stack.intakeToken}` },
    body: raw ?? JSON.stringify(body),
  });
  const text = await response.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = { text };
  }
  return { status: response.status, json };
}


async function rejectedBatches(prefix: string): Promise<RejectedBatch[]> {
  const listed = await stack.s3.send(new ListObjectsV2Command({ Bucket: stack.rejectedBucket, Prefix: prefix }));
  const batches: RejectedBatch[] = [];
  for (const object of listed.Contents ?? []) {
    const got = await stack.s3.send(new GetObjectCommand({ Bucket: stack.rejectedBucket, Key: object.Key }));
    batches.push(rejectedBatchSchema.parse(JSON.parse(await got.Body!.transformToString())));
  }
  return batches;
}

beforeAll(async () => {
  stack = await startLocalStack({
    maxReceiveCount: 2,
    visibilityTimeoutSeconds: 1,
    // Enough for the deadline margin (5 s) plus one request's timeout: the forwarder starts no
    // request it could not finish.
    forwarderTimeoutMs: 10_000,
    env: { INTAKE_MAX_BODY_BYTES: "300000", HTTP_TIMEOUT_MS: "2000" },
  });
});
afterAll(() => stack.stop());
beforeEach(() => stack.sandbox?.reset());

describe("intake edge", () => {
  it("answers health checks", async () => {
    const response = await fetch(`${stack.intakeUrl}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ok" });
  });

  it("refuses a missing or wrong token with a 401 JSON error", async () => {
    const wrong = await post("/v1/events", [], "not-the-token");
    expect(wrong.status).toBe(401);
    expect(wrong.json.error).toBe("unauthorized");
    const missing = await fetch(`${stack.intakeUrl}/v1/events`, { method: "POST", body: "[]" });
    expect(missing.status).toBe(401);
  });

  it("answers 400 with a JSON error for an unparseable body or a wrong envelope, never 500", async () => {
    const broken = await post("/v1/events", undefined, undefined, "{not json");
    expect(broken.status).toBe(400);
    expect(broken.json.error).toBe("invalid_json");
    const wrongShape = await post("/v1/events", { hello: "world" });
    expect(wrongShape.status).toBe(400);
    expect(wrongShape.json.error).toBe("invalid_body");
  });

  it("answers 413 for a body over the limit", async () => {
    const big = await post("/v1/events", [{ event: "Big", properties: { distinct_id: "u", time: NOW_S(), pad: "x".repeat(400_000) } }]);
    expect(big.status).toBe(413);
  });
});

describe("event path", () => {
  it("delivers a valid event to Mixpanel with time in ms, a derived $insert_id and ip 0", async () => {
    const time = NOW_S();
    const response = await post("/v1/events", { events: [{ event: "Signed Up", properties: { distinct_id: "user-1", time, plan: "pro" } }] });
    expect(response.status).toBe(202);
    expect(response.json).toMatchObject({ accepted: 1, rejected: 0, errors: [] });
    const arrived = await eventually(() => stack.sandbox?.events.find((e) => e.event === "Signed Up"));
    expect(arrived.properties).toMatchObject({ distinct_id: "user-1", time: time * 1000, plan: "pro", ip: "0" });
    expect(arrived.properties.$insert_id).toMatch(/^[0-9a-f]{36}$/);
  });

  it("dedupes a client's retry: the same event without $insert_id gets the same id", async () => {
    const body = [{ event: "Retried", properties: { distinct_id: "user-2", time: NOW_S(), n: 1 } }];
    await post("/v1/events", body);
    await post("/v1/events", body);
    await eventually(() => (stack.sandbox?.events.filter((e) => e.event === "Retried").length ?? 0) >= 2 || undefined);
    const ids = new Set(stack.sandbox?.events.filter((e) => e.event === "Retried").map((e) => e.properties.$insert_id));
    expect(ids.size).toBe(1);
    expect(stack.sandbox?.uniqueEventCount).toBe(1);
  });

  it("queues the good events of a mixed batch and keeps the bad ones, with reasons, in the rejected store", async () => {
    const time = NOW_S();
    const response = await post("/v1/events", [
      { event: "Good", properties: { distinct_id: "user-3", time } },
      { event: "Bad", properties: { distinct_id: "undefined", time } },
      { event: "Future", properties: { distinct_id: "user-3", time: time + 7200 } },
      "not an event",
    ]);
    expect(response.status).toBe(202);
    expect(response.json).toMatchObject({ accepted: 1, rejected: 3 });
    expect(response.json.errors).toEqual([
      { index: 1, code: "banned_distinct_id", reason: expect.any(String) },
      { index: 2, code: "invalid_time", reason: expect.stringContaining("future") },
      { index: 3, code: "invalid_shape", reason: expect.any(String) },
    ]);
    await eventually(() => stack.sandbox?.events.find((e) => e.event === "Good"));
    const batches = await rejectedBatches("rejected/native/");
    const mine = batches.find((b) => b.correlationId === response.json.correlationId);
    expect(mine?.stageOfFailure).toBe("intake");
    expect(mine?.items.map((i) => [i.index, i.code])).toEqual([
      [1, "banned_distinct_id"],
      [2, "invalid_time"],
      [3, "invalid_shape"],
    ]);
    expect(mine?.items[0]?.payload).toEqual({ event: "Bad", properties: { distinct_id: "undefined", time } });
  });

  it("puts the records Mixpanel refuses (400 failed_records) in the rejected store and imports the rest once", async () => {
    stack.sandbox?.failNext({
      path: "/import",
      status: 400,
      body: JSON.stringify({
        code: 400,
        error: "some data points in the request failed validation",
        num_records_imported: 1,
        status: "Bad Request",
        failed_records: [{ index: 1, $insert_id: "refused-1", field: "properties.plan", message: "'properties.plan' is invalid" }],
      }),
    });
    const response = await post("/v1/events", [
      { event: "Kept", properties: { distinct_id: "user-4", time: NOW_S(), $insert_id: "kept-1" } },
      { event: "Refused", properties: { distinct_id: "user-4", time: NOW_S(), $insert_id: "refused-1" } },
    ]);
    expect(response.status).toBe(202);
    const batch = await eventually(async () =>
      (await rejectedBatches("rejected/native/")).find((b) => b.correlationId === response.json.correlationId && b.stageOfFailure === "forwarder"),
    );
    expect(batch.items).toHaveLength(1);
    expect(batch.items[0]?.reason).toContain("properties.plan");
    expect(JSON.parse(batch.items[0]?.line ?? "{}").properties.$insert_id).toBe("refused-1");
    // The scripted 400 stood in for Mixpanel having ingested "Kept": the message must be
    // acknowledged (gone from the queue, not waiting to be redelivered) after one request.
    await eventually(async () => {
      const attributes = await stack.sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl: stack.events.url,
          AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        }),
      );
      const pending = Number(attributes.Attributes?.ApproximateNumberOfMessages) + Number(attributes.Attributes?.ApproximateNumberOfMessagesNotVisible);
      return pending === 0 ? true : undefined;
    });
    expect(stack.sandbox?.requests.filter((r) => r.path === "/import")).toHaveLength(1);
  });

  it("sends a message that keeps failing (401) to the DLQ after maxReceiveCount, never dropping it", async () => {
    const faults = Array.from({ length: 20 }, () => ({ path: "/import", status: 401, body: '{"error":"Invalid credentials"}' }));
    stack.sandbox?.failNext(...faults);
    const response = await post("/v1/events", [{ event: "Doomed", properties: { distinct_id: "user-5", time: NOW_S(), $insert_id: "doomed-1" } }]);
    expect(response.status).toBe(202);
    const message = await eventually(async () => {
      const received = await stack.sqs.send(new ReceiveMessageCommand({ QueueUrl: stack.events.dlqUrl, WaitTimeSeconds: 1, MaxNumberOfMessages: 10 }));
      return received.Messages?.find((m) => parseQueuedRecords(m.Body ?? "").lines().some((line) => line.includes("doomed-1")));
    }, 20_000);
    const envelope = parseQueuedRecords(message.Body ?? "");
    expect(envelope.version).toBe(2);
    expect(envelope.correlationId).toBe(response.json.correlationId);
    expect(JSON.parse(envelope.lines()[0] ?? "{}").properties.$insert_id).toBe("doomed-1");
    expect(stack.sandbox?.events.find((e) => e.event === "Doomed")).toBeUndefined();
    expect(stack.sandbox?.requests.filter((r) => r.status === 401).length).toBe(2);
  });
});

describe("Braze Currents storage transport", () => {
  it("reads an Avro file dropped in the Currents bucket and delivers its events", async () => {
    const record = {
      id: "0b8a5a43-6f0e-4f57-9a49-6c1d2c3c0a11",
      user_id: "5f1d0c7e9d3b2a0012345678",
      external_user_id: "user-avro-1",
      time: NOW_S(),
      name: "Added To Cart",
      properties: JSON.stringify({ sku: "sku-1", quantity: 2 }),
      device_model: "Pixel 9",
    };
    const file = await avroFile(schemaFor("CustomEvent", [record]), [record]);
    await stack.s3.send(
      new PutObjectCommand({
        Bucket: stack.currentsBucket,
        Key: "currents/dataexport.prod-01.S3.integration.abc/event_type=users.behaviors.CustomEvent/date=2026-11-22-12/300/0/part+0+0.avro",
        Body: file,
      }),
    );
    const arrived = await eventually(() => stack.sandbox?.events.find((e) => e.properties.distinct_id === "user-avro-1"));
    expect(arrived.event).toBe("[Braze Custom Event] Added To Cart");
    expect(arrived.properties).toMatchObject({
      $insert_id: record.id,
      $partner_id: "braze",
      $device: "Pixel 9",
      "[Custom event property] sku": "sku-1",
      "[Custom event property] quantity": 2,
      time: record.time * 1000,
    });
    expect(arrived.properties.user_id).toBeUndefined();
  });
});
