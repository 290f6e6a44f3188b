import type { Readable } from "node:stream";
import { type AwsTarget, type CallPath, awsCall } from "./aws-call.js";

/**
 * The S3 calls every function may make: PutObject (rejected store), GetObject (Braze Currents
 * files, the erased-ids list), through the SDK's S3Client (s3-client.ts). The client and its two
 * commands are imported at the first call, not with the function: the intake and the forwarders
 * only write to S3 when something is rejected. The cohort store's bucket calls are in
 * s3-bucket.ts so they stay out of the bundles that do not need them.
 */
export interface S3Api {
  putObject(bucket: string, key: string, body: string | Uint8Array, contentType: string): Promise<void>;
  /** Throws AwsCallError with code NoSuchKey (404) when the object is gone. */
  getObject(bucket: string, key: string, versionId?: string): Promise<Uint8Array>;
}

export function createS3(target: AwsTarget, path: CallPath = "consumer"): S3Api {
  const calls = () => import("./s3-object-calls.js");
  return {
    async putObject(bucket, key, body, contentType) {
      const { putObject } = await calls();
      await awsCall(() => putObject(target, path, bucket, key, body, contentType));
    },
    async getObject(bucket, key, versionId) {
      const { getObject } = await calls();
      return awsCall(() => getObject(target, path, bucket, key, versionId));
    },
  };
}

/** GetObject streamed: history files (`npm run import s3://…`) can be larger than memory. */
export interface S3ObjectStreams {
  /** Throws AwsCallError (NoSuchKey, AccessDenied, …) when S3 refuses the object; the body's own errors come from the stream. */
  openObject(bucket: string, key: string): Promise<Readable>;
}

export function createS3ObjectStreams(target: AwsTarget, path: CallPath = "consumer"): S3ObjectStreams {
  return {
    async openObject(bucket, key) {
      const { getObjectStream } = await import("./s3-object-calls.js");
      return awsCall(() => getObjectStream(target, path, bucket, key));
    },
  };
}
