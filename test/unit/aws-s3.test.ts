import { CreateBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AwsCallError } from "../../lib/aws/aws-call.js";
import { createS3 } from "../../lib/aws/s3.js";
import { type S3BucketApi, createS3Bucket } from "../../lib/aws/s3-bucket.js";
import { startLocalAws } from "../support/fauxqs.js";

/** lib/aws/s3-bucket.ts and s3.ts (the SDK's S3Client as the functions configure it) against fauxqs's S3. */
let stopAws: () => Promise<void> = async () => {};
let s3: S3BucketApi;
let sdk: S3Client;
const bucket = "lite-s3";

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID ??= "test";
  process.env.AWS_SECRET_ACCESS_KEY ??= "test";
  const aws = await startLocalAws();
  stopAws = aws.stop;
  const target = { region: "us-east-1", endpoint: aws.address };
  s3 = createS3Bucket(target, createS3(target));
  sdk = new S3Client({ region: "us-east-1", endpoint: aws.address, forcePathStyle: true, credentials: { accessKeyId: "test", secretAccessKey: "test" } });
  await sdk.send(new CreateBucketCommand({ Bucket: bucket }));
});
afterAll(async () => {
  sdk.destroy();
  await stopAws();
});

describe("S3 calls of lib/aws", () => {
  it("lists every key under a prefix across pages with the continuation token", async () => {
    // 1,000 keys is S3's page size; 1,003 forces a second page. Keys with XML-escaped characters.
    const keys = Array.from({ length: 1003 }, (_, i) => `list/${String(i).padStart(5, "0")}${i % 250 === 0 ? "-a&b<c>" : ""}.json`);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(keys.slice(i, i + 50).map((key) => sdk.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: "x" }))));
    }
    await sdk.send(new PutObjectCommand({ Bucket: bucket, Key: "other/not-listed", Body: "x" }));

    const first = await s3.listObjectsV2(bucket, "list/");
    expect(first.keys).toHaveLength(1000);
    expect(first.nextContinuationToken).toBeTruthy();
    const second = await s3.listObjectsV2(bucket, "list/", first.nextContinuationToken);
    expect(second.nextContinuationToken).toBeUndefined();
    expect([...first.keys, ...second.keys].sort()).toEqual([...keys].sort());
    expect((await s3.listObjectsV2(bucket, "nothing-here/")).keys).toEqual([]);
  });

  it("copies an object server-side, bytes intact, and deletes it", async () => {
    const bytes = new Uint8Array([0, 1, 2, 250, 255, 10, 13]);
    await s3.putObject(bucket, "copy/source file+1.bin", bytes, "application/octet-stream");
    await s3.copyObject(bucket, "copy/source file+1.bin", "copy/target.bin");
    expect([...(await s3.getObject(bucket, "copy/target.bin"))]).toEqual([...bytes]);
    await s3.deleteObject(bucket, "copy/target.bin");
    expect(await s3.objectExists(bucket, "copy/target.bin")).toBe(false);
  });

  it("answers HeadObject 404 as absent and a missing GetObject as NoSuchKey", async () => {
    expect(await s3.objectExists(bucket, "head/missing")).toBe(false);
    await s3.putObject(bucket, "head/present", "", "application/octet-stream");
    expect(await s3.objectExists(bucket, "head/present")).toBe(true);
    const error = await s3.getObject(bucket, "head/missing").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AwsCallError);
    expect(error).toMatchObject({ code: "NoSuchKey", status: 404 });
  });

  it("refuses a copy from a key that is not there", async () => {
    const error = await s3.copyObject(bucket, "copy/never-written", "copy/out").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AwsCallError);
    expect(await s3.objectExists(bucket, "copy/out")).toBe(false);
  });
});
