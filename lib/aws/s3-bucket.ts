import { type AwsTarget, type CallPath, awsCall, isMissingObject } from "./aws-call.js";
import type { S3Api } from "./s3.js";

/**
 * The bucket calls of the cohort store (lib/cohorts/store.ts) beside PutObject and GetObject:
 * HeadObject, CopyObject, DeleteObject and ListObjectsV2, through the same S3Client as s3.ts
 * (s3-client.ts), their commands imported at the first call. A module of their own so only the
 * bundles that use them carry them (cohort-export, webhook-delivery).
 */
export interface S3ListPage {
  readonly keys: string[];
  /** Present when S3 said the listing is truncated: pass it to the next call. */
  readonly nextContinuationToken?: string;
}

export interface S3BucketApi extends S3Api {
  /** false when S3 answers 404 (HEAD answers carry no error body, so no NoSuchKey code). */
  objectExists(bucket: string, key: string): Promise<boolean>;
  /** Server-side copy inside one bucket. */
  copyObject(bucket: string, fromKey: string, toKey: string): Promise<void>;
  deleteObject(bucket: string, key: string): Promise<void>;
  /** One page (up to 1,000 keys) of ListObjectsV2 under a prefix. */
  listObjectsV2(bucket: string, prefix: string, continuationToken?: string): Promise<S3ListPage>;
}

export function createS3Bucket(target: AwsTarget, objects: S3Api, path: CallPath = "consumer"): S3BucketApi {
  const calls = () => import("./s3-bucket-calls.js");
  return {
    putObject: objects.putObject,
    getObject: objects.getObject,
    async objectExists(bucket, key) {
      const { headObject } = await calls();
      try {
        await awsCall(() => headObject(target, path, bucket, key));
        return true;
      } catch (error) {
        if (isMissingObject(error)) return false;
        throw error;
      }
    },
    async copyObject(bucket, fromKey, toKey) {
      const { copyObject } = await calls();
      await awsCall(() => copyObject(target, path, bucket, fromKey, toKey));
    },
    async deleteObject(bucket, key) {
      const { deleteObject } = await calls();
      await awsCall(() => deleteObject(target, path, bucket, key));
    },
    async listObjectsV2(bucket, prefix, continuationToken) {
      const { listObjectsV2 } = await calls();
      return awsCall(() => listObjectsV2(target, path, bucket, prefix, continuationToken));
    },
  };
}
