import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { Readable } from "node:stream";
import type { AwsTarget, CallPath } from "./aws-call.js";
import { s3ClientFor } from "./s3-client.js";

/** PutObject and GetObject only: what s3.ts loads at its first call. */
export async function putObject(target: AwsTarget, path: CallPath, bucket: string, key: string, body: string | Uint8Array, contentType: string): Promise<void> {
  await s3ClientFor(target, path).send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType, ContentLength: typeof body === "string" ? Buffer.byteLength(body) : body.byteLength }));
}

export async function getObject(target: AwsTarget, path: CallPath, bucket: string, key: string, versionId?: string): Promise<Uint8Array> {
  const answer = await s3ClientFor(target, path).send(new GetObjectCommand({ Bucket: bucket, Key: key, ...(versionId ? { VersionId: versionId } : {}) }));
  // The SDK checks the body's checksum while it is read: a mismatch throws here.
  return answer.Body ? await answer.Body.transformToByteArray() : new Uint8Array();
}

/** GetObject with the body left as the SDK's stream, for objects too large to hold in memory. */
export async function getObjectStream(target: AwsTarget, path: CallPath, bucket: string, key: string): Promise<Readable> {
  const answer = await s3ClientFor(target, path).send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  // In Node the SDK's body is an http.IncomingMessage (a Readable); its checksum is checked as it is read.
  return answer.Body instanceof Readable ? answer.Body : Readable.from([]);
}
