import { CopyObjectCommand, DeleteObjectCommand, HeadObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import type { AwsTarget, CallPath } from "./aws-call.js";
import { s3ClientFor } from "./s3-client.js";

/** HeadObject, CopyObject, DeleteObject and ListObjectsV2: what s3-bucket.ts loads at its first call. */
export async function headObject(target: AwsTarget, path: CallPath, bucket: string, key: string): Promise<void> {
  await s3ClientFor(target, path).send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
}

export async function copyObject(target: AwsTarget, path: CallPath, bucket: string, fromKey: string, toKey: string): Promise<void> {
  // CopySource is "<bucket>/<key>" URL-encoded, `/` kept
  // (https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html#API_CopyObject_RequestSyntax).
  const source = `${bucket}/${fromKey.split("/").map(encodeURIComponent).join("/")}`;
  await s3ClientFor(target, path).send(new CopyObjectCommand({ Bucket: bucket, Key: toKey, CopySource: source }));
}

export async function deleteObject(target: AwsTarget, path: CallPath, bucket: string, key: string): Promise<void> {
  await s3ClientFor(target, path).send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
}

export async function listObjectsV2(
  target: AwsTarget,
  path: CallPath,
  bucket: string,
  prefix: string,
  continuationToken?: string,
): Promise<{ keys: string[]; nextContinuationToken?: string }> {
  const answer = await s3ClientFor(target, path).send(
    new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(continuationToken ? { ContinuationToken: continuationToken } : {}) }),
  );
  const keys = (answer.Contents ?? []).flatMap((item) => (item.Key === undefined ? [] : [item.Key]));
  if (!answer.IsTruncated) return { keys };
  // A truncated answer without its token would make a listing silently stop early.
  if (!answer.NextContinuationToken) throw new Error("S3 ListObjectsV2 answered IsTruncated without a NextContinuationToken");
  return { keys, nextContinuationToken: answer.NextContinuationToken };
}
