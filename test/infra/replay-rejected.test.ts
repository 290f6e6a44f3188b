import { createS3Client, createSqsClient } from "../../infra/aws/sdk-clients.js";
import { createS3 } from "../../lib/aws/s3.js";
/**
 * `npm run replay` against fauxqs (S3 + SQS): batches written by the real
 * rejected store go back onto the events queue as envelopes the forwarder
 * reads, and the store is left holding only what was not replayed.
 */
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { CreateQueueCommand, DeleteMessageCommand, type Message, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { startLocalAws } from "../support/fauxqs.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseQueuedRecords } from "../../lib/records/envelope-v2.js";
import { createRejectedStore, rejectedBatchSchema } from "../../lib/queue/rejected-store.js";
import { main, parseRejectedKey, recordLine } from "../../infra/replay-rejected.js";

type Server = Awaited<ReturnType<typeof startLocalAws>>;

const REGION = "us-east-1";
let server: Server;
let s3: S3Client;
let sqs: ReturnType<typeof createSqsClient>;
let stageCounter = 0;

process.env.AWS_ACCESS_KEY_ID ??= "test";
process.env.AWS_SECRET_ACCESS_KEY ??= "test";

beforeAll(async () => {
  server = await startLocalAws();
  s3 = createS3Client(REGION, server.address);
  sqs = createSqsClient(REGION, server.address);
});

afterAll(async () => {
  await server.stop();
});

const record = (id: string, time = 1_700_000_000) => JSON.stringify({ event: "Signed Up", properties: { distinct_id: "u1", time, $insert_id: id } });

/** A deployed-looking stage: bucket mixpanel-relay-<stage>-rejected-<account> and the events queue. */
async function createStage(): Promise<{ stage: string; bucket: string; queueUrl: string }> {
  const stage = `r${++stageCounter}`;
  const bucket = `mixpanel-relay-${stage}-rejected-123456789012`;
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const queue = await sqs.send(new CreateQueueCommand({ QueueName: `mixpanel-relay-${stage}-events` }));
  return { stage, bucket, queueUrl: queue.QueueUrl ?? "" };
}

async function seed(stage: string, bucket: string, at: Date) {
  const store = createRejectedStore({ s3: createS3({ region: REGION, endpoint: server.address }), bucket, prefix: "rejected/", stage, now: () => at });
  const mixpanelRefused = await store.put({
    source: "native",
    kind: "event",
    correlationId: "corr-a",
    stageOfFailure: "forwarder",
    items: [
      { index: 0, code: "mixpanel_400", reason: "'properties.time' is invalid", line: record("a0") },
      { index: 1, code: "mixpanel_400", reason: "'properties.time' is invalid", line: record("a1") },
    ],
  });
  const mixed = await store.put({
    source: "braze",
    kind: "event",
    correlationId: "corr-b",
    stageOfFailure: "intake",
    items: [
      { index: 0, code: "time_out_of_window", reason: "too old", line: record("b0") },
      { index: 1, code: "invalid_body", reason: "not an object", payload: 42 },
      { index: 2, code: "no_external_id", reason: "anonymous Braze user", line: record("b2"), dropped: true },
    ],
  });
  return { mixpanelRefused, mixed };
}

async function receiveAll(queueUrl: string): Promise<Message[]> {
  const all: Message[] = [];
  for (;;) {
    const result = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
    const messages = result.Messages ?? [];
    if (messages.length === 0) return all;
    all.push(...messages);
    for (const m of messages) await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle }));
  }
}

async function keys(bucket: string, prefix: string): Promise<string[]> {
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (listed.Contents ?? []).map((object) => object.Key ?? "").sort();
}

async function readJson(bucket: string, key: string): Promise<unknown> {
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return JSON.parse((await object.Body?.transformToString()) ?? "");
}

const quiet = () => undefined;

describe("npm run replay", () => {
  it("re-queues replayable records as envelopes and leaves the rest in rejected/", async () => {
    const { stage, bucket, queueUrl } = await createStage();
    const { mixpanelRefused, mixed } = await seed(stage, bucket, new Date("2026-11-20T10:00:00Z"));

    const summary = await main(["--stage", stage, "--region", REGION, "--endpoint", server.address], {}, quiet);

    expect(summary).toMatchObject({ objectsScanned: 2, objectsReplayed: 2, itemsReplayed: 3, left: { noRecord: 1, dropped: 1, filteredOut: 0, tooLarge: 0 } });
    const envelopes = (await receiveAll(queueUrl)).map((m) => parseQueuedRecords(m.Body ?? ""));
    const replayedIds = envelopes.flatMap((e) => e.lines().map((line) => (JSON.parse(line) as { properties: { $insert_id: string } }).properties.$insert_id)).sort();
    expect(replayedIds).toEqual(["a0", "a1", "b0"]);
    for (const envelope of envelopes) {
      expect(envelope.kind).toBe("event");
      expect(["native", "braze"]).toContain(envelope.source);
      expect(envelope.correlationId).toMatch(/^corr-[ab]-replay$/);
    }

    // Fully replayed object moved; the mixed one keeps only what was not replayed.
    expect(await keys(bucket, "rejected/")).toEqual([mixed]);
    const left = rejectedBatchSchema.parse(await readJson(bucket, mixed));
    expect(left.items.map((item) => item.code).sort()).toEqual(["invalid_body", "no_external_id"]);
    const replayedKeys = await keys(bucket, "replayed/");
    expect(replayedKeys).toEqual([mixed, mixpanelRefused].map((key) => key.replace(/^rejected\//, "replayed/")).sort());

    // Running it again replays nothing new.
    const again = await main(["--stage", stage, "--region", REGION, "--endpoint", server.address], {}, quiet);
    expect(again?.itemsReplayed).toBe(0);
    expect(await receiveAll(queueUrl)).toHaveLength(0);
  });

  it("filters by source, date and code, and changes nothing on --dry-run", async () => {
    const { stage, bucket, queueUrl } = await createStage();
    await seed(stage, bucket, new Date("2026-11-20T10:00:00Z"));
    await seed(stage, bucket, new Date("2026-11-22T10:00:00Z"));
    const base = ["--stage", stage, "--region", REGION, "--endpoint", server.address];

    const dry = await main([...base, "--dry-run"], {}, quiet);
    expect(dry?.itemsReplayed).toBe(6);
    expect(await receiveAll(queueUrl)).toHaveLength(0);
    expect(await keys(bucket, "rejected/")).toHaveLength(4);
    expect(await keys(bucket, "replayed/")).toHaveLength(0);

    const native = await main([...base, "--source", "native", "--since", "2026-11-21"], {}, quiet);
    expect(native).toMatchObject({ objectsScanned: 1, itemsReplayed: 2 });

    const braze = await main([...base, "--code", "time_out_of_window", "--until", "2026-11-20"], {}, quiet);
    // Both 2026-11-20 objects are scanned; only b0 has the code (the other four items are filtered out).
    expect(braze).toMatchObject({ objectsScanned: 2, itemsReplayed: 1, left: { filteredOut: 4 } });
    expect(await receiveAll(queueUrl)).toHaveLength(2);
  });

  it("re-queues expected drops only when asked to", async () => {
    const { stage, bucket, queueUrl } = await createStage();
    await seed(stage, bucket, new Date("2026-11-20T10:00:00Z"));
    const summary = await main(["--stage", stage, "--region", REGION, "--endpoint", server.address, "--source", "braze", "--include-dropped"], {}, quiet);
    expect(summary?.itemsReplayed).toBe(2);
    expect(await receiveAll(queueUrl)).toHaveLength(1);
  });

  it("finds the local stack's bucket, refuses to guess between several, and reports unreadable objects", async () => {
    const stage = `r${++stageCounter}`;
    await s3.send(new CreateBucketCommand({ Bucket: `mixpanel-relay-${stage}-rejected` }));
    await sqs.send(new CreateQueueCommand({ QueueName: `mixpanel-relay-${stage}-events` }));
    await s3.send(new PutObjectCommand({ Bucket: `mixpanel-relay-${stage}-rejected`, Key: "rejected/native/2026-11-20/x.json", Body: "not json" }));
    const summary = await main(["--stage", stage, "--region", REGION, "--endpoint", server.address], {}, quiet);
    expect(summary?.unreadable).toEqual(["rejected/native/2026-11-20/x.json"]);

    await s3.send(new CreateBucketCommand({ Bucket: `mixpanel-relay-${stage}-rejected-999999999999` }));
    await expect(main(["--stage", stage, "--region", REGION, "--endpoint", server.address], {}, quiet)).rejects.toThrow(/pass --bucket/);
    await expect(main(["--stage", stage, "--region", REGION, "--since", "20 Nov"], {}, quiet)).rejects.toThrow(/YYYY-MM-DD/);
  });

  it("parses the rejected store's key layout", () => {
    expect(parseRejectedKey("rejected/native/2026-11-20/2026-11-20T10-00-00-000Z-c-intake-0.json")).toEqual({ source: "native", date: "2026-11-20" });
    expect(parseRejectedKey("replayed/native/2026-11-20/x.json")).toBeUndefined();
    expect(parseRejectedKey("rejected/native/x.json")).toBeUndefined();
  });

  it("reads an oversized record stored as `payload` by intakes before the shared enqueue step, and nothing else from payload", () => {
    const line = record("big");
    expect(recordLine({ index: 0, code: "record_too_large_for_queue", reason: "r", line })).toBe(line);
    expect(recordLine({ index: 0, code: "record_too_large_for_queue", reason: "r", payload: line })).toBe(line);
    expect(recordLine({ index: 0, code: "invalid_time", reason: "r", payload: line })).toBeUndefined();
    expect(recordLine({ index: 0, code: "record_too_large_for_queue", reason: "r", payload: { event: "E" } })).toBeUndefined();
  });
});
