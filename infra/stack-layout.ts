/**
 * Names the per-stage stack gives its resources (serverless.yml and
 * infra/resources/*.yml), shared by the operator CLIs (redrive, replay, package)
 * and the packaging test so the three cannot drift apart.
 */

export const SERVICE_NAME = "mixpanel-relay";

/** Function keys in serverless.yml; `npm run build` writes dist/<name>/index.mjs for each. */
export const FUNCTION_NAMES = ["intake", "forwarder", "currents-reader", "cohort-export", "webhook-delivery", "brevo-forwarder"] as const;
export type FunctionName = (typeof FUNCTION_NAMES)[number];

/** Queues that have a dead-letter queue, by the name `--queue` takes. */
export const REDRIVABLE_QUEUES = ["events", "deliveries", "brevo"] as const;
export type RedrivableQueue = (typeof REDRIVABLE_QUEUES)[number];

/** Stage names become part of queue, bucket and function names. */
const STAGE_PATTERN = /^[a-z][a-z0-9-]{0,19}$/;

export function assertStageName(stage: string): string {
  if (!STAGE_PATTERN.test(stage)) {
    throw new Error(`stage "${stage}" must be lower-case letters, digits or "-", at most 20 characters, starting with a letter`);
  }
  return stage;
}

export function stackName(stage: string): string {
  return `${SERVICE_NAME}-${stage}`;
}

export function functionName(stage: string, fn: FunctionName): string {
  return `${SERVICE_NAME}-${stage}-${fn}`;
}

/** The stage's CloudWatch dashboard (infra/resources/dashboard.yml). */
export function dashboardName(stage: string): string {
  return `${SERVICE_NAME}-${stage}`;
}

export function dashboardUrl(stage: string, region: string): string {
  return `https://${region}.console.aws.amazon.com/cloudwatch/home?region=${region}#dashboards/dashboard/${dashboardName(stage)}`;
}

export function queueName(stage: string, queue: RedrivableQueue): string {
  return `${SERVICE_NAME}-${stage}-${queue}`;
}

export function deadLetterQueueName(stage: string, queue: RedrivableQueue): string {
  return `${queueName(stage, queue)}-dlq`;
}

/** S3 bucket names include the account id (infra/resources/buckets.yml). */
export function rejectedBucketPrefix(stage: string): string {
  return `${SERVICE_NAME}-${stage}-rejected-`;
}

export function rejectedBucketName(stage: string, accountId: string): string {
  return `${rejectedBucketPrefix(stage)}${accountId}`;
}

export function snapshotBucketPrefix(stage: string): string {
  return `${SERVICE_NAME}-${stage}-snapshots-`;
}

export function snapshotBucketName(stage: string, accountId: string): string {
  return `${snapshotBucketPrefix(stage)}${accountId}`;
}

/** Every queue of a stage starts with this (ListQueues prefix), including ones added later. */
export function queueNamePrefix(stage: string): string {
  return `${SERVICE_NAME}-${stage}-`;
}

/** Log groups the functions write to (Logs Insights queries of `npm run trace`). */
export function logGroupName(stage: string, fn: FunctionName): string {
  return `/aws/lambda/${functionName(stage, fn)}`;
}

/** Key prefixes inside the rejected-events bucket. */
export const REJECTED_PREFIX = "rejected/";
export const REPLAYED_PREFIX = "replayed/";
