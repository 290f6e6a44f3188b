import { gzipSync } from "node:zlib";
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { CreateQueueCommand, GetQueueAttributesCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createS3Client, createSqsClient } from "../../infra/aws/sdk-clients.js";
import { IMPORT_CHECKPOINT_PREFIX, main } from "../../infra/import.js";
import { checkpointSchema } from "../../lib/import/checkpoint.js";
import { startAwsProxy } from "../support/aws-proxy.js";
import { startLocalAws } from "../support/fauxqs.js";

/**
 * `npm run import s3://bucket/prefix` against fauxqs (a real S3 and SQS protocol server) behind
 * a loopback proxy that answers one object with S3's AccessDenied: listing across pages, objects
 * streamed through the functions' S3 client, an unreadable or corrupt object named and skipped,
 * and the checkpoint kept in the stage's bucket.
 */
const HISTORY = "history";
const REJECTED = "mixpanel-relay-local-rejected";
const NOW_S = Math.floor(Date.now() / 1000);
let aws: Awaited<ReturnType<typeof startLocalAws>>;
let proxy: Awaited<ReturnType<typeof startAwsProxy>>;
let s3: S3Client;
let sqs: SQSClient;
let eventsQueueUrl: string;

const event = (prefix: string, n: number) => JSON.stringify({ event: "Viewed", properties: { distinct_id: `${prefix}-${n}`, time: NOW_S - 3600 + (n % 1000), n } });
const ndjson = (prefix: string, count: number) => `${Array.from({ length: count }, (_, n) => event(prefix, n)).join("\n")}\n`;
const put = (key: string, body: string | Uint8Array) => s3.send(new PutObjectCommand({ Bucket: HISTORY, Key: key, Body: body }));

async function importRun(args: string[]) {
  const lines: string[] = [];
  const result = await main(["--stage", "local", "--endpoint", proxy.url, "--region", "us-east-1", ...args], { ...process.env, AWS_ENDPOINT_URL: undefined }, (line) => lines.push(line));
  if (!result) throw new Error("no result");
  return { ...result, output: lines.join("\n") };
}

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID ??= "local";
  process.env.AWS_SECRET_ACCESS_KEY ??= "local";
  aws = await startLocalAws();
  proxy = await startAwsProxy(aws.address, {
    answer: (request) =>
      request.method === "GET" && request.url.startsWith(`/${HISTORY}/`) && request.url.includes("denied")
        ? { status: 403, headers: { "content-type": "application/xml" }, body: Buffer.from('<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>') }
        : undefined,
  });
  const credentials = { accessKeyId: "local", secretAccessKey: "local" };
  s3 = createS3Client("us-east-1", aws.address, credentials);
  sqs = createSqsClient("us-east-1", aws.address, credentials);
  await s3.send(new CreateBucketCommand({ Bucket: HISTORY }));
  await s3.send(new CreateBucketCommand({ Bucket: REJECTED }));
  eventsQueueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "mixpanel-relay-local-events" }))).QueueUrl ?? "";
  await sqs.send(new CreateQueueCommand({ QueueName: "mixpanel-relay-local-brevo" }));
});
afterAll(async () => {
  s3?.destroy();
  sqs?.destroy();
  await proxy?.stop();
  await aws?.stop();
});

describe("npm run import s3://bucket/prefix", () => {
  it("lists every page of a prefix, names an unreadable and a corrupt object and goes on with the next", async () => {
    const keys = Array.from({ length: 1_001 }, (_, n) => `many/part-${String(n).padStart(4, "0")}.ndjson`);
    for (let at = 0; at < keys.length; at += 100) await Promise.all(keys.slice(at, at + 100).map((key, n) => put(key, `${event("page", at + n)}\n`)));
    const whole = gzipSync(ndjson("corrupt", 2_000));
    await put("many/zz-corrupt.ndjson.gz", whole.subarray(0, Math.floor(whole.length / 2)));
    await put("many/zz-denied.ndjson", ndjson("denied", 5));
    await put("many/zz-notes.txt", "not a history file");
    await put("many/zzz-after.json", JSON.stringify({ events: [JSON.parse(event("after", 1)), JSON.parse(event("after", 2))] }));

    const run = await importRun(["s3://history/many/", "--dry-run"]);
    expect(run.exitCode).toBe(3);
    expect(run.report.files).toHaveLength(1_004);
    expect(run.report.failedFiles).toEqual(["s3://history/many/zz-corrupt.ndjson.gz", "s3://history/many/zz-denied.ndjson"]);
    const failures = run.report.files.flatMap((file) => (file.failed ? [file.failed] : []));
    expect(failures[0]).toMatch(/^s3:\/\/history\/many\/zz-corrupt\.ndjson\.gz: truncated gzip.*after row \d+/);
    expect(failures[1]).toMatch(/^s3:\/\/history\/many\/zz-denied\.ndjson: AccessDenied: Access Denied/);
    expect(run.report.files.at(-1)).toMatchObject({ file: "s3://history/many/zzz-after.json", rows: 2, accepted: 2 });
    expect(run.report.accepted).toBe(1_001 + 2 + (run.report.files.at(-3)?.accepted ?? 0));
    expect(run.output).toMatch(/2 of 1004 file\(s\) failed/);
  }, 120_000);

  it("keeps the checkpoint of an S3 run in the stage's bucket, and --resume reads it there", async () => {
    await put("small/a.ndjson.gz", gzipSync(ndjson("a", 3_000)));
    await put("small/b.json", JSON.stringify(Array.from({ length: 10 }, (_, n) => JSON.parse(event("b", n)))));
    const run = await importRun(["s3://history/small", "--batch-rows", "1000"]);
    expect(run.exitCode).toBe(0);
    expect(run.report).toMatchObject({ read: 3_010, accepted: 3_010, sent: 3_010 });
    const queued = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: eventsQueueUrl, AttributeNames: ["ApproximateNumberOfMessages"] }));
    expect(Number(queued.Attributes?.ApproximateNumberOfMessages)).toBeGreaterThan(0);

    const listed = await s3.send(new ListObjectsV2Command({ Bucket: REJECTED, Prefix: IMPORT_CHECKPOINT_PREFIX }));
    expect(listed.Contents).toHaveLength(1);
    const stored = await s3.send(new GetObjectCommand({ Bucket: REJECTED, Key: listed.Contents?.[0]?.Key }));
    const checkpoint = checkpointSchema.parse(JSON.parse((await stored.Body?.transformToString()) ?? ""));
    expect(checkpoint.files).toEqual({
      "s3://history/small/a.ndjson.gz": { rowsDone: 3_000, finished: true },
      "s3://history/small/b.json": { rowsDone: 10, finished: true },
    });
    expect(run.output).toContain(`checkpoint s3://${REJECTED}/${IMPORT_CHECKPOINT_PREFIX}local-`);

    const resumed = await importRun(["s3://history/small", "--batch-rows", "1000", "--resume"]);
    expect(resumed.report).toMatchObject({ read: 0, sent: 0 });
    expect(resumed.output).toContain("s3://history/small/a.ndjson.gz: finished by the earlier run, skipped");
  }, 60_000);
});
