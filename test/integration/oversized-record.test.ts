import { createS3Client, createSqsClient } from "../../infra/aws/sdk-clients.js";
import { randomBytes } from "node:crypto";
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { CreateQueueCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { buildApp } from "fauxqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replayRejected } from "../../infra/replay-rejected.js";
import { createS3 } from "../../lib/aws/s3.js";
import { createSqs } from "../../lib/aws/sqs.js";
import { parseStageConfig } from "../../lib/config/stage.js";
import { handleIntake } from "../../lib/intake/process.js";
import { createRejectedStore, rejectedBatchSchema, type RejectedBatch } from "../../lib/queue/rejected-store.js";
import { createQueueSender } from "../../lib/queue/sqs-sender.js";
import { parseQueuedRecords } from "../../lib/records/envelope-v2.js";
import { readCurrentsObject } from "../../lib/currents/reader.js";
import { type Flat, avroFile, currentsKey, flattenHttpEvent, schemaFor } from "../unit/sources/avro-support.js";
import { brazeFixtures } from "../unit/sources/support.js";

/**
 * A record too large for one SQS message, on both edges that map records (HTTP intake and the
 * Currents Avro reader), through the shared enqueue step against fauxqs: the small records are
 * queued, the large one is stored with `line` under a batch naming its kind, and
 * `npm run replay` (with the queues' real 256 KiB limit) puts it on the events queue.
 */
const REGION = "us-east-1";
const TOKEN = "oversized-token";
/** Small enough that one padded record does not fit; the others do. */
const MAX_MESSAGE_BYTES = 4_096;
const app = buildApp({ logger: false });
let endpoint = "";
let sqs: ReturnType<typeof createSqsClient>;
let s3: ReturnType<typeof createS3Client>;
let bucketCounter = 0;

beforeAll(async () => {
  endpoint = await app.listen({ port: 0, host: "127.0.0.1" });
  process.env.AWS_ACCESS_KEY_ID ??= "test";
  process.env.AWS_SECRET_ACCESS_KEY ??= "test";
  sqs = createSqsClient(REGION, endpoint);
  s3 = createS3Client(REGION, endpoint);
});
afterAll(() => app.close());

/** Queue envelopes are compressed: random text keeps the record large on the wire. */
const incompressible = () => randomBytes(MAX_MESSAGE_BYTES).toString("base64");

async function freshStage() {
  const name = `oversized-${++bucketCounter}`;
  await s3.send(new CreateBucketCommand({ Bucket: name }));
  const queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: name }))).QueueUrl ?? "";
  const deps = {
    config: parseStageConfig({ braze: { event_types: ["users.messages.email.Send"] } }, "test"),
    queue: createQueueSender(createSqs({ region: REGION, endpoint }), 262_144),
    queueUrl,
    rejected: createRejectedStore({ s3: createS3({ region: REGION, endpoint }), bucket: name, prefix: "rejected/", stage: "test", now: () => new Date() }),
    maxMessageBytes: MAX_MESSAGE_BYTES,
    nowMs: Date.now,
  };
  return { bucket: name, queueUrl, deps };
}

async function drain(queueUrl: string): Promise<string[]> {
  const lines: string[] = [];
  for (let round = 0; round < 20; round++) {
    const got = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
    const messages = got.Messages ?? [];
    if (messages.length === 0) break;
    for (const message of messages) lines.push(...parseQueuedRecords(message.Body ?? "").lines());
  }
  return lines;
}

async function stored(bucket: string): Promise<RejectedBatch[]> {
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "rejected/" }));
  return Promise.all(
    (listed.Contents ?? []).map(async (object) => {
      const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: object.Key }));
      return rejectedBatchSchema.parse(JSON.parse((await got.Body?.transformToString()) ?? ""));
    }),
  );
}

/** The one stored batch holds the oversized record (input index 1) as `line`, never as `payload`. */
async function storedOversizedLine(bucket: string, header: Pick<RejectedBatch, "source" | "kind" | "stageOfFailure">): Promise<string> {
  const batches = await stored(bucket);
  expect(batches).toHaveLength(1);
  expect(batches[0]).toMatchObject(header);
  expect(batches[0]?.items).toHaveLength(1);
  const [item] = batches[0]?.items ?? [];
  expect(item).toMatchObject({ index: 1, code: "record_too_large_for_queue" });
  expect(item?.payload).toBeUndefined();
  return item?.line ?? "";
}

async function replayAll(bucket: string, queueUrl: string) {
  return replayRejected({ s3, sqs, bucket, queueUrl, filter: { includeDropped: false }, dryRun: false, log: () => {} });
}

describe("a record too large for one SQS message", () => {
  it("at the HTTP intake: the rest is queued, it is stored with `line` and its kind, and replay queues it", async () => {
    const { bucket, queueUrl, deps } = await freshStage();
    const time = Math.floor(Date.now() / 1000) - 60;
    const body = {
      updates: [
        { $distinct_id: "small", $set: { plan: "pro" } },
        { $distinct_id: "large", $set: { notes: incompressible() } },
      ],
    };
    const result = await handleIntake(
      { method: "POST", path: "/v1/profiles", headers: { authorization: `Bearer ${TOKEN}` }, query: {}, body: Buffer.from(JSON.stringify(body)) },
      { ...deps, tokens: async () => [TOKEN], maxBodyBytes: 1_000_000, newCorrelationId: () => `corr-${time}` },
    );
    expect(result.response.statusCode).toBe(202);
    expect(JSON.parse(result.response.body)).toMatchObject({ accepted: 1, rejected: 1, errors: [{ index: 1, code: "record_too_large_for_queue" }] });
    expect((await drain(queueUrl)).map((line) => JSON.parse(line).$distinct_id)).toEqual(["small"]);

    const line = await storedOversizedLine(bucket, { source: "profiles", kind: "profile", stageOfFailure: "intake" });
    expect(JSON.parse(line)).toMatchObject({ $distinct_id: "large" });

    const summary = await replayAll(bucket, queueUrl);
    expect(summary.itemsReplayed).toBe(1);
    expect((await drain(queueUrl)).map((line) => JSON.parse(line).$distinct_id)).toEqual(["large"]);
  });

  it("in the Currents Avro reader: the same step, the same stored field, the same replay", async () => {
    const { bucket, queueUrl, deps } = await freshStage();
    const send = brazeFixtures().find((fixture) => fixture.event.event_type === "users.messages.email.Send");
    if (!send) throw new Error("fixture missing");
    const small: Flat = { ...flattenHttpEvent(send.event), time: Math.floor(Date.now() / 1000) - 60 };
    const large: Flat = { ...small, id: "0f0f0f0f-1111-4222-8333-444455556666", campaign_name: incompressible() };
    const key = currentsKey("users.messages.email.Send", "oversized+0+0.avro");
    await s3.send(new CreateBucketCommand({ Bucket: `${bucket}-source` }));
    await s3.send(new PutObjectCommand({ Bucket: `${bucket}-source`, Key: key, Body: await avroFile(schemaFor("Send", [small]), [small, large]) }));

    const summary = await readCurrentsObject({ bucket: `${bucket}-source`, key }, { ...deps, s3: createS3({ region: REGION, endpoint }) });
    expect(summary).toMatchObject({ records: 2, accepted: 1, rejected: 1, dropped: 0 });
    expect((await drain(queueUrl)).map((line) => JSON.parse(line).properties.$insert_id)).toEqual([small.id]);

    const line = await storedOversizedLine(bucket, { source: "braze-avro", kind: "event", stageOfFailure: "reader" });
    expect(JSON.parse(line)).toMatchObject({ properties: { $insert_id: large.id } });

    expect((await replayAll(bucket, queueUrl)).itemsReplayed).toBe(1);
    expect((await drain(queueUrl)).map((line) => JSON.parse(line).properties.$insert_id)).toEqual([large.id]);
  });
});
