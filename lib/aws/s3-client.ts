import { S3Client } from "@aws-sdk/client-s3";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { type AwsTarget, type CallPath, clientConfig, httpHandlerOptions } from "./aws-call.js";

/**
 * The one S3Client per target and call path, loaded only by the functions' first S3 call
 * (s3.ts and s3-bucket.ts import this module dynamically).
 *
 * - `followRegionRedirects: false`: a bucket in another region is a setup error to see, not a
 *   301 to follow with the signed request (the relay never follows redirects).
 * - With a configured endpoint (the local stack, tests) the bucket goes in the path.
 * - Checksums stay the SDK's defaults ("when supported"): PutObject sends a CRC32
 *   (buckets with Object Lock require one), GetObject asks for the object's checksum and the
 *   SDK refuses a body that does not match it
 *   (https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html).
 * - A Braze Currents file can hold 100,000 events (docs/vendors/braze-currents.md §3): a
 *   request may take up to 120 s on the queue consumers, 8 s on the intake (API Gateway's 30 s).
 */
const REQUEST_TIMEOUT_MS = { intake: 8_000, consumer: 120_000 } as const;

const clients = new Map<string, S3Client>();

export function s3ClientFor(target: AwsTarget, path: CallPath): S3Client {
  const key = `${target.region} ${target.endpoint ?? ""} ${path}`;
  let client = clients.get(key);
  if (!client) {
    client = new S3Client({
      ...clientConfig(target, path),
      ...(target.endpoint ? { forcePathStyle: true } : {}),
      followRegionRedirects: false,
      requestHandler: new NodeHttpHandler(httpHandlerOptions(REQUEST_TIMEOUT_MS[path])),
    });
    clients.set(key, client);
  }
  return client;
}
