import { createS3Client, createSqsClient } from "../../infra/aws/sdk-clients.js";
import { createS3 } from "../../lib/aws/s3.js";
import { createSqs } from "../../lib/aws/sqs.js";
import { randomBytes } from "node:crypto";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { CreateQueueCommand, DeleteMessageCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { buildApp } from "fauxqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseStageConfig } from "../../lib/config/stage.js";
import { ConfigError, RetryableError } from "../../lib/util/errors.js";
import { handleIntake, type HttpRequest, type IntakeDeps } from "../../lib/intake/process.js";
import { MAX_REJECTED_OBJECT_BYTES, createRejectedStore, rejectedBatchSchema } from "../../lib/queue/rejected-store.js";
import { type QueueSender, createQueueSender } from "../../lib/queue/sqs-sender.js";
import { parseQueuedRecords } from "../../lib/records/envelope-v2.js";

/** The intake's status codes when its peers fail, against a real SQS/S3 protocol server. */
const app = buildApp({ logger: false });
let endpoint = "";
let queueUrl = "";
const TOKEN = "intake-token-for-failure-tests";

beforeAll(async () => {
  endpoint = await app.listen({ port: 0, host: "127.0.0.1" });
  process.env.AWS_ACCESS_KEY_ID ??= "test";
  process.env.AWS_SECRET_ACCESS_KEY ??= "test";
  const sqs = createSqsClient("us-east-1", endpoint);
  queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "intake-failures", Attributes: { MaximumMessageSize: "262144" } }))).QueueUrl ?? "";
  await createS3Client("us-east-1", endpoint).send(new CreateBucketCommand({ Bucket: "rejected-ok" }));
});
afterAll(() => app.close());

function deps(overrides: Partial<IntakeDeps> = {}): IntakeDeps {
  // The SQS and S3 calls the deployed intake makes (lib/aws), against fauxqs.
  const sqs = createSqs({ region: "us-east-1", endpoint });
  return {
    config: parseStageConfig({}, "test"),
    tokens: async () => [TOKEN],
    queue: createQueueSender(sqs, 262_144),
    queueUrl,
    rejected: createRejectedStore({ s3: createS3({ region: "us-east-1", endpoint }), bucket: "rejected-ok", prefix: "rejected/", stage: "test", now: () => new Date() }),
    maxMessageBytes: 262_144,
    maxBodyBytes: 1_000_000,
    nowMs: Date.now,
    newCorrelationId: () => "corr-1",
    ...overrides,
  };
}

const request = (body: unknown): HttpRequest => ({
  method: "POST",
  path: "/v1/events",
  headers: { authorization: `Bearer ${TOKEN}` },
  query: {},
  body: Buffer.from(JSON.stringify(body)),
});
const good = () => [{ event: "E", properties: { distinct_id: "u", time: Math.floor(Date.now() / 1000) } }];

describe("intake when its peers fail", () => {
  it("answers 503 when SQS refuses the send, so the sender retries", async () => {
    const result = await handleIntake(request(good()), deps({ queueUrl: `${endpoint}/000000000000/no-such-queue` }));
    expect(result.response.statusCode).toBe(503);
    expect(JSON.parse(result.response.body).error).toBe("unavailable");
  });

  it("answers 503 when the rejected store cannot be written, rather than losing the rejected events", async () => {
    const rejected = createRejectedStore({ s3: createS3({ region: "us-east-1", endpoint }), bucket: "no-such-bucket", prefix: "rejected/", stage: "test", now: () => new Date() });
    const result = await handleIntake(request([{ event: "E", properties: { distinct_id: "null", time: 1 } }]), deps({ rejected }));
    expect(result.response.statusCode).toBe(503);
  });

  it("queues nothing of a batch whose rejections cannot be stored, so the sender's retry queues each good record once", async () => {
    const rejected = createRejectedStore({ s3: createS3({ region: "us-east-1", endpoint }), bucket: "no-such-bucket", prefix: "rejected/", stage: "test", now: () => new Date() });
    const sent: number[] = [];
    const inner = createQueueSender(createSqs({ region: "us-east-1", endpoint }), 262_144);
    const queue: QueueSender = { send: async (url, bodies) => { sent.push(bodies.length); return inner.send(url, bodies); } };
    const mixed = [...good(), { event: "E", properties: { distinct_id: "null", time: 1 } }];
    const result = await handleIntake(request(mixed), deps({ rejected, queue }));
    expect(result.response.statusCode).toBe(503);
    expect(sent).toEqual([]);
  });

  it("stores a large rejected batch as objects of at most 4 MB, every item kept, and answers", async () => {
    const s3 = createS3({ region: "us-east-1", endpoint });
    const objects: { key: string; text: string }[] = [];
    const recording = { putObject: async (bucket: string, key: string, body: string | Uint8Array, type: string) => {
      objects.push({ key, text: typeof body === "string" ? body : Buffer.from(body).toString("utf8") });
      return s3.putObject(bucket, key, body, type);
    } };
    const rejected = createRejectedStore({ s3: recording, bucket: "rejected-ok", prefix: "rejected/", stage: "test", now: () => new Date() });
    const filler = "é".repeat(5000);
    const bad = Array.from({ length: 1000 }, (_, n) => ({ event: "Bad", properties: { distinct_id: `u${n}`, time: 1, filler } }));
    const result = await handleIntake(request([...good(), ...bad]), deps({ rejected, maxBodyBytes: 20_000_000 }));
    expect(result.response.statusCode).toBe(202);
    expect(objects.length).toBeGreaterThan(1);
    const batches = objects.map(({ text }) => {
      expect(Buffer.byteLength(text)).toBeLessThanOrEqual(MAX_REJECTED_OBJECT_BYTES);
      return rejectedBatchSchema.parse(JSON.parse(text));
    });
    expect(batches.flatMap((batch) => batch.items.map((item) => item.index))).toEqual(bad.map((_, n) => n + 1));
    expect(batches.map((batch) => batch.part)).toEqual(batches.map((_, n) => ({ number: n + 1, of: batches.length })));
    expect(new Set(objects.map(({ key }) => key)).size).toBe(objects.length);
  });

  it("answers 503, not 401, when the token secret cannot be read", async () => {
    const retryable = await handleIntake(request(good()), deps({ tokens: async () => Promise.reject(new RetryableError("throttled")) }));
    expect(retryable.response.statusCode).toBe(503);
    const missing = await handleIntake(request(good()), deps({ tokens: async () => Promise.reject(new ConfigError("missing")) }));
    expect(missing.response.statusCode).toBe(503);
  });

  it("queues text SQS would refuse raw (U+FFFE, U+FFFF) and keeps it intact", async () => {
    const odd = "a\uFFFFb\uFFFEc";
    const result = await handleIntake(request([{ event: "Odd", properties: { distinct_id: "u", time: Math.floor(Date.now() / 1000), note: odd } }]), deps());
    expect(result.response.statusCode).toBe(202);
    const sqs = createSqsClient("us-east-1", endpoint);
    const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
    const lines = (received.Messages ?? []).flatMap((m) => parseQueuedRecords(m.Body ?? "").lines());
    const odds = lines.map((line) => JSON.parse(line)).filter((e) => e.event === "Odd");
    expect(odds.map((e) => e.properties.note)).toEqual([odd]);
  });

  it("answers 400 too_deep for a hostile, deeply nested body, without parsing it", async () => {
    const bomb = `[{"event":"Bomb","properties":{"distinct_id":"u","time":${Math.floor(Date.now() / 1000)},"x":${"[".repeat(100_000)}${"]".repeat(100_000)}}}]`;
    const result = await handleIntake({ ...request([]), body: Buffer.from(bomb) }, deps());
    expect(result.response.statusCode).toBe(400);
    expect(JSON.parse(result.response.body)).toMatchObject({ error: "too_deep" });
  });

  it("stores an item nested deeper than Mixpanel keeps, but within the body limit, with its reason", async () => {
    const deep = `[{"event":"Deep","properties":{"distinct_id":"u","time":${Math.floor(Date.now() / 1000)},"x":${"[".repeat(40)}${"]".repeat(40)}}}]`;
    const result = await handleIntake({ ...request([]), body: Buffer.from(deep) }, deps());
    expect(result.response.statusCode).toBe(200);
    expect(JSON.parse(result.response.body)).toMatchObject({ accepted: 0, rejected: 1, errors: [{ index: 0, code: "too_deep" }] });
  });

  it("ignores a correlation id that is unsafe in S3 keys and logs", async () => {
    const unsafe = await handleIntake({ ...request(good()), headers: { authorization: `Bearer ${TOKEN}`, "x-correlation-id": "../../etc/passwd" } }, deps());
    expect(unsafe.correlationId).toBe("corr-1");
    const safe = await handleIntake({ ...request(good()), headers: { authorization: `Bearer ${TOKEN}`, "x-correlation-id": "req-42.a_b" } }, deps());
    expect(safe.correlationId).toBe("req-42.a_b");
    // Drain what these two requests queued so the packing test counts only its own.
    const sqs = createSqsClient("us-east-1", endpoint);
    const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
    for (const m of received.Messages ?? []) await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle }));
  });

  it("packs many events per SQS message, each message under the cap", async () => {
    const now = Math.floor(Date.now() / 1000);
    // Hex padding compresses ~2×, so the cap (not the 2000-record limit) decides most cuts.
    const events = Array.from({ length: 3000 }, (_, i) => ({ event: "Packed", properties: { distinct_id: `u${i}`, time: now, pad: randomBytes(100).toString("hex") } }));
    const result = await handleIntake(request(events), deps({ maxMessageBytes: 65_536 }));
    expect(result.response.statusCode).toBe(202);
    const sqs = createSqsClient("us-east-1", endpoint);
    let records = 0;
    let messages = 0;
    for (;;) {
      const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
      if (!received.Messages?.length) break;
      for (const message of received.Messages) {
        expect(Buffer.byteLength(message.Body ?? "")).toBeLessThanOrEqual(65_536);
        const count = parseQueuedRecords(message.Body ?? "").lines().length;
        expect(count).toBeLessThanOrEqual(2000);
        records += count;
        messages++;
      }
    }
    expect(records).toBe(3000);
    expect(messages).toBeGreaterThan(3);
    expect(messages).toBeLessThan(3000 / 100);
  });
});
