import { createS3Client, createSqsClient } from "../../../infra/aws/sdk-clients.js";
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { CreateQueueCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sendToBrevoQueue } from "../../../lib/enqueue/brevo-fanout.js";
import { RetryableError } from "../../../lib/util/errors.js";
import { createRejectedStore, rejectedBatchSchema } from "../../../lib/queue/rejected-store.js";
import { createQueueSender } from "../../../lib/queue/sqs-sender.js";
import { startLocalAws } from "../../support/fauxqs.js";
import { brevoConfigSchema } from "../../../lib/config/brevo.js";
import { brevoQueueBodies } from "../../../lib/enqueue/brevo-fanout.js";
import { randomBytes } from "node:crypto";
import { packEnvelopesV2, parseQueuedRecords } from "../../../lib/records/envelope-v2.js";

const config = (sync: Record<string, boolean>) => brevoConfigSchema.parse({ api_key_secret: "s", sync });
const lines = new Map([
  ["event" as const, ['{"event":"Purchase","properties":{}}', '{"event":"Other","properties":{}}']],
  ["profile" as const, ['{"$distinct_id":"u","$set":{}}']],
  ["group" as const, ['{"$group_key":"k","$group_id":"g","$set":{}}']],
]);

describe("fan-out to the Brevo queue", () => {
  it("queues the same records, in the same envelope, only for the kinds brevo.sync enables", () => {
    const bodies = brevoQueueBodies(config({ events: true, groups: true }), lines, "native", "corr-1", 262_144).map(parseQueuedRecords);
    expect(bodies.map((envelope) => ({ kind: envelope.kind, source: envelope.source, correlationId: envelope.correlationId, records: envelope.lines() }))).toEqual([
      { kind: "event", source: "native", correlationId: "corr-1", records: lines.get("event") },
      { kind: "group", source: "native", correlationId: "corr-1", records: lines.get("group") },
    ]);
  });

  it("queues nothing without a brevo block or with every kind off", () => {
    expect(brevoQueueBodies(undefined, lines, "native", "c", 262_144)).toEqual([]);
    expect(brevoQueueBodies(config({}), lines, "native", "c", 262_144)).toEqual([]);
  });

  it("leaves out a record too large for one message (already refused for Mixpanel) and packs the rest", () => {
    // Incompressible, so it cannot fit even gzipped; the events queue's packer refuses it too.
    const big = `{"event":"Big","properties":{"x":"${randomBytes(3000).toString("hex")}"}}`;
    const small = '{"event":"a","properties":{}}';
    expect(packEnvelopesV2("event", "native", "c", [big, small], { maxMessageBytes: 2048 }).oversizedIndexes).toEqual([0]);
    const bodies = brevoQueueBodies(config({ events: true }), new Map([["event" as const, [big, small]]]), "native", "c", 2048);
    expect(bodies.flatMap((body) => parseQueuedRecords(body).lines())).toEqual([small]);
  });
});

describe("sending the fan-out (fauxqs)", () => {
  let aws: Awaited<ReturnType<typeof startLocalAws>>;
  beforeAll(async () => {
    process.env.AWS_ACCESS_KEY_ID ??= "test";
    process.env.AWS_SECRET_ACCESS_KEY ??= "test";
    aws = await startLocalAws();
    await createS3Client("us-east-1", aws.address).send(new CreateBucketCommand({ Bucket: "fanout-rejected" }));
  });
  afterAll(() => aws.stop());
  const deps = (bucket = "fanout-rejected") => ({
    queue: createQueueSender(createSqsClient("us-east-1", aws.address), 262_144),
    rejected: createRejectedStore({ s3: createS3Client("us-east-1", aws.address), bucket, prefix: "rejected/", stage: "t", now: () => new Date() }),
  });
  const bodies = brevoQueueBodies(config({ profiles: true }), lines, "profiles", "corr-9", 262_144);

  it("puts the bodies on the Brevo queue", async () => {
    const sqs = createSqsClient("us-east-1", aws.address);
    const url = (await sqs.send(new CreateQueueCommand({ QueueName: "fanout-brevo" }))).QueueUrl ?? "";
    await sendToBrevoQueue(deps(), url, bodies, "intake");
    const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10 }));
    expect(received.Messages?.map((m) => m.Body)).toEqual(bodies);
  });

  it("stores the records for replay to Brevo when the Brevo queue is unreachable, instead of failing the intake", async () => {
    await sendToBrevoQueue(deps(), `${aws.address}/000000000000/no-such-queue`, bodies, "intake");
    const s3 = createS3Client("us-east-1", aws.address);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: "fanout-rejected", Prefix: "rejected/profiles/" }));
    expect(listed.Contents).toHaveLength(1);
    const got = await s3.send(new GetObjectCommand({ Bucket: "fanout-rejected", Key: listed.Contents?.[0]?.Key }));
    const batch = rejectedBatchSchema.parse(JSON.parse((await got.Body?.transformToString()) ?? ""));
    expect(batch).toMatchObject({ destination: "brevo", kind: "profile", correlationId: "corr-9", stageOfFailure: "intake" });
    expect(batch.items).toMatchObject([{ code: "brevo_queue_unavailable", line: lines.get("profile")?.[0] }]);
  });

  it("throws (→ 503) only when neither the queue nor the store can take them", async () => {
    await expect(sendToBrevoQueue(deps("no-such-bucket"), `${aws.address}/000000000000/no-such-queue`, bodies, "intake")).rejects.toBeInstanceOf(RetryableError);
  });
});
