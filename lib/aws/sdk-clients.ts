import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { SQSClient, SendMessageBatchCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import type { S3Api } from "./s3.js";
import type { SqsApi } from "./sqs.js";

/**
 * The AWS SDK client factories, for the code that still uses the SDK: the operator commands
 * (infra/), the local stack and the tests' setup, and the cohort functions until they move to
 * lib/aws/s3.ts and lib/aws/sqs.ts. The intake, forwarders and Currents reader use those
 * (SigV4 over fetch, no SDK in their bundles).
 */
/** An SQS SDK client that also offers the SqsApi calls. */
export function createSqsClient(region: string, endpoint?: string): SQSClient & SqsApi {
  const client = new SQSClient({
    region,
    ...(endpoint ? { endpoint } : {}),
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

/** An S3 SDK client that also offers the S3Api putObject call. */
export function createS3Client(region: string, endpoint?: string): S3Client & Pick<S3Api, "putObject"> {
  const client = new S3Client({ region, ...(endpoint ? { endpoint, forcePathStyle: true } : {}) });
  const api: Pick<S3Api, "putObject"> = {
    async putObject(bucket, key, body, contentType) {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType }));
    },
  };
  return Object.assign(client, api);
}
