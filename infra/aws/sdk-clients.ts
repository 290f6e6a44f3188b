import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { SQSClient, SendMessageBatchCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { AwsCallError } from "../../lib/aws/aws-call.js";
import type { S3BucketApi } from "../../lib/aws/s3-bucket.js";
import type { SqsApi } from "../../lib/aws/sqs.js";

/**
 * The AWS SDK client factories of the operator commands (infra/), the local stack and the tests'
 * setup, which need operations the functions never make (CreateQueue, ReceiveMessage, …). The
 * functions call lib/aws/s3.ts and lib/aws/sqs.ts (the same SDK clients, configured with the
 * relay's timeouts and attempts and loaded at their first call). These clients also offer the
 * SqsApi / S3Api calls so operator code can hand them to lib/ modules (the cohort store, the
 * erased-ids list), with the SDK's errors turned into AwsCallError.
 */
/** Static credentials (the local stack's; elsewhere the SDK's default chain finds them). */
export interface StaticCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

/** An SQS SDK client that also offers the SqsApi calls. */
export function createSqsClient(region: string, endpoint?: string, credentials?: StaticCredentials): SQSClient & SqsApi {
  const client = new SQSClient({
    region,
    ...(endpoint ? { endpoint } : {}),
    ...(credentials ? { credentials } : {}),
    // The queue URL's host is not an endpoint we want the SDK to dial: the local stack serves
    // every queue from one in-process server.
    useQueueUrlAsEndpoint: false,
  });
  const api: SqsApi = {
    async sendMessage(queueUrl, body, delaySeconds) {
      await client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body, ...(delaySeconds !== undefined ? { DelaySeconds: delaySeconds } : {}) }));
    },
    async sendMessageBatch(queueUrl, entries) {
      const result = await client.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: [...entries] }));
      return (result.Failed ?? []).map((f) => ({ Id: f.Id ?? "", Code: f.Code ?? "?", Message: f.Message ?? "" }));
    },
  };
  return Object.assign(client, api);
}

/** The SDK's S3 error as the AwsCallError lib/ modules check (code and HTTP status). */
async function asAwsCallError<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof S3ServiceException) throw new AwsCallError(error.name, error.message, error.$metadata.httpStatusCode ?? 0);
    throw error;
  }
}

/** An S3 SDK client that also offers the S3BucketApi calls. */
export function createS3Client(region: string, endpoint?: string, credentials?: StaticCredentials): S3Client & S3BucketApi {
  const client = new S3Client({ region, ...(endpoint ? { endpoint, forcePathStyle: true } : {}), ...(credentials ? { credentials } : {}) });
  const api: S3BucketApi = {
    putObject: (bucket, key, body, contentType) =>
      asAwsCallError(async () => {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType }));
      }),
    getObject: (bucket, key, versionId) =>
      asAwsCallError(async () => {
        const result = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...(versionId ? { VersionId: versionId } : {}) }));
        return result.Body ? await result.Body.transformToByteArray() : new Uint8Array();
      }),
    objectExists: (bucket, key) =>
      asAwsCallError(async () => {
        await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return true;
      }).catch((error: unknown) => {
        if (error instanceof AwsCallError && error.status === 404) return false;
        throw error;
      }),
    copyObject: (bucket, fromKey, toKey) =>
      asAwsCallError(async () => {
        await client.send(new CopyObjectCommand({ Bucket: bucket, Key: toKey, CopySource: `${bucket}/${encodeURIComponent(fromKey).replace(/%2F/g, "/")}` }));
      }),
    deleteObject: (bucket, key) =>
      asAwsCallError(async () => {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      }),
    listObjectsV2: (bucket, prefix, continuationToken) =>
      asAwsCallError(async () => {
        const result = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(continuationToken ? { ContinuationToken: continuationToken } : {}) }));
        const keys = (result.Contents ?? []).flatMap((item) => (item.Key ? [item.Key] : []));
        return result.IsTruncated && result.NextContinuationToken ? { keys, nextContinuationToken: result.NextContinuationToken } : { keys };
      }),
  };
  return Object.assign(client, api);
}
