import { createS3 } from "../../lib/aws/s3.js";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { CreateQueueCommand, ReceiveMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import type { S3Event } from "aws-lambda";
import { buildApp } from "fauxqs";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { s3ObjectCreatedEvent } from "../../infra/local/s3-notifier.js";
import { logger } from "../../lib/observability/telemetry.js";
import { insertIdHash } from "../../lib/observability/trace-ids.js";
import { parseQueuedRecords } from "../../lib/records/envelope-v2.js";
import { rejectedBatchSchema } from "../../lib/queue/rejected-store.js";
import { type Flat, avroFile, currentsKey, flattenHttpEvent, schemaFor } from "../unit/sources/avro-support.js";
import { brazeFixtures } from "../unit/sources/support.js";

/**
 * The S3-triggered Currents reader end to end against fauxqs (S3 + SQS on one local
 * endpoint): a Braze-shaped Avro object → events queue envelopes + rejected store.
 */
const REGION = "us-east-1";
const SOURCE_BUCKET = "braze-currents-export";
const REJECTED_BUCKET = "relay-rejected";

let app: ReturnType<typeof buildApp>;
let s3: S3Client;
let s3Endpoint = "";
let sqs: SQSClient;
let queueUrl: string;
let handler: (event: S3Event) => Promise<void>;

function s3Event(key: string): S3Event {
  return s3ObjectCreatedEvent({ bucket: SOURCE_BUCKET, key, region: REGION, size: 1, eTag: "etag" });
}

async function drainQueue(): Promise<string[]> {
  const bodies: string[] = [];
  for (;;) {
    const result = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
    const messages = result.Messages ?? [];
    if (messages.length === 0) return bodies;
    bodies.push(...messages.map((message) => message.Body ?? ""));
  }
}

async function rejectedBatches() {
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: REJECTED_BUCKET }));
  return Promise.all(
    (listed.Contents ?? []).map(async (object) => {
      const body = await s3.send(new GetObjectCommand({ Bucket: REJECTED_BUCKET, Key: object.Key }));
      return rejectedBatchSchema.parse(JSON.parse(await (body.Body?.transformToString() ?? "")));
    }),
  );
}

beforeAll(async () => {
  app = buildApp({ logger: false });
  const endpoint = await app.listen({ port: 0, host: "127.0.0.1" });
  s3Endpoint = endpoint;
  process.env.AWS_ACCESS_KEY_ID ??= "local";
  process.env.AWS_SECRET_ACCESS_KEY ??= "local";
  s3 = new S3Client({ region: REGION, endpoint, forcePathStyle: true });
  sqs = new SQSClient({ region: REGION, endpoint, useQueueUrlAsEndpoint: false });
  await s3.send(new CreateBucketCommand({ Bucket: SOURCE_BUCKET }));
  await s3.send(new CreateBucketCommand({ Bucket: REJECTED_BUCKET }));
  queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "events" }))).QueueUrl ?? "";

  const configDir = mkdtempSync(join(tmpdir(), "currents-reader-"));
  const configFile = join(configDir, "test.json");
  writeFileSync(configFile, JSON.stringify({ braze: { event_types: ["users.messages.email.Send", "users.behaviors.CustomEvent"] } }));
  Object.assign(process.env, {
    RELAY_STAGE: "test",
    RELAY_CONFIG_FILE: configFile,
    AWS_REGION: REGION,
    AWS_ENDPOINT_URL: endpoint,
    EVENTS_QUEUE_URL: queueUrl,
    REJECTED_BUCKET,
    POWERTOOLS_LOG_LEVEL: "SILENT",
    POWERTOOLS_METRICS_DISABLED: "true",
  });
  ({ handler } = await import("../../functions/currents-reader/handler.js"));
});

afterAll(async () => {
  await app?.close();
});

describe("currents-reader handler", () => {
  it("queues mapped events and files rejections for one Avro object", async () => {
    const send = brazeFixtures().find((fixture) => fixture.event.event_type === "users.messages.email.Send");
    if (!send) throw new Error("fixture missing");
    // The handler reads the real clock, so the event time is relative to it.
    const good: Flat = { ...flattenHttpEvent(send.event), time: Math.floor(Date.now() / 1000) - 60 };
    const anonymous = { ...good, id: "0b0b0b0b-1111-4222-8333-444455556666", external_user_id: null };
    const future = { ...good, id: "0c0c0c0c-1111-4222-8333-444455556666", time: 2_147_000_000 };
    const key = currentsKey("users.messages.email.Send", "dataexport with space+0+1.avro");
    const body = await avroFile(schemaFor("Send", [good]), [good, anonymous, future]);
    await s3.send(new PutObjectCommand({ Bucket: SOURCE_BUCKET, Key: key, Body: body }));

    // The object's log line, with the queued event's hashed insert id for `npm run trace`.
    logger.setLogLevel("INFO");
    const logged: string[] = [];
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      logged.push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"));
      return true;
    });
    try {
      await handler(s3Event(key));
    } finally {
      spy.mockRestore();
      logger.setLogLevel("WARN");
    }
    const objectLines = logged.join("").split("\n").filter((line) => line.includes('"currents avro object"')).map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(objectLines).toEqual([expect.objectContaining({ accepted: 1, rejected: 1, dropped: 1, insertIdHashes: [insertIdHash(String(good.id))] })]);
    expect(logged.join("")).not.toContain(String(good.id));

    const envelopes = (await drainQueue()).map(parseQueuedRecords);
    expect(envelopes).toHaveLength(1);
    expect(envelopes[0]).toMatchObject({ version: 2, kind: "event", source: "braze-avro" });
    const records = envelopes.flatMap((envelope) => envelope.lines().map((line) => JSON.parse(line)));
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      event: "Email Send",
      properties: { distinct_id: "user-7915", $insert_id: good.id, time: Number(good.time) * 1000, $partner_id: "braze" },
    });

    const batches = await rejectedBatches();
    expect(batches).toHaveLength(1);
    expect(batches[0]).toMatchObject({ source: "braze-avro", stageOfFailure: "reader", correlationId: envelopes[0]?.correlationId });
    expect(batches[0]?.items.map((item) => [item.index, item.code, item.dropped ?? false])).toEqual([
      [1, "no_external_user_id", true],
      [2, "invalid_time", false],
    ]);
  });

  it("files an unreadable object once instead of retrying it forever", async () => {
    const key = currentsKey("users.messages.email.Send", "not-avro.avro");
    await s3.send(new PutObjectCommand({ Bucket: SOURCE_BUCKET, Key: key, Body: "hello" }));
    const before = (await rejectedBatches()).length;
    await handler(s3Event(key));
    const batches = await rejectedBatches();
    expect(batches).toHaveLength(before + 1);
    const unreadable = batches.flatMap((batch) => batch.items).find((item) => item.code === "unreadable_object");
    expect(unreadable?.payload).toMatchObject({ bucket: SOURCE_BUCKET, key });
    expect(await drainQueue()).toEqual([]);
  });

  it("drops event types outside the stage allow-list", async () => {
    const record = { id: "0d0d0d0d-1111-4222-8333-444455556666", user_id: "b", external_user_id: "u", time: Math.floor(Date.now() / 1000) };
    const key = currentsKey("users.messages.pushnotification.Send");
    await s3.send(new PutObjectCommand({ Bucket: SOURCE_BUCKET, Key: key, Body: await avroFile(schemaFor("Push", [record]), [record]) }));
    await handler(s3Event(key));
    expect(await drainQueue()).toEqual([]);
    const items = (await rejectedBatches()).flatMap((batch) => batch.items);
    expect(items).toContainEqual(expect.objectContaining({ code: "event_type_not_enabled", dropped: true }));
  });

  it("throws (so Lambda retries) when the queue cannot be reached", async () => {
    const record = { id: "0e0e0e0e-1111-4222-8333-444455556666", user_id: "b", external_user_id: "u", time: Math.floor(Date.now() / 1000) };
    const key = currentsKey("users.behaviors.CustomEvent");
    const withName = { ...record, name: "Opened", properties: "{}" };
    await s3.send(new PutObjectCommand({ Bucket: SOURCE_BUCKET, Key: key, Body: await avroFile(schemaFor("Custom", [withName]), [withName]) }));
    const { readCurrentsObject } = await import("../../lib/currents/reader.js");
    const { parseStageConfig } = await import("../../lib/config/stage.js");
    await expect(
      readCurrentsObject(
        { bucket: SOURCE_BUCKET, key },
        {
          s3: createS3({ region: REGION, endpoint: s3Endpoint }),
          config: parseStageConfig({}, "test"),
          queue: { send: async () => Promise.reject(new Error("SQS down")) },
          queueUrl,
          rejected: { put: async () => "key" },
          maxMessageBytes: 262_144,
          nowMs: Date.now,
        },
      ),
    ).rejects.toThrow(/SQS down/);
  });
});
