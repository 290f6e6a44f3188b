import { createS3Client, createSqsClient } from "./aws/sdk-clients.js";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import type { S3Client } from "@aws-sdk/client-s3";
import type { S3BucketApi } from "../lib/aws/s3-bucket.js";
import type { SQSClient } from "@aws-sdk/client-sqs";
import { localStackFilePath, readLocalStackFile } from "./local/stack-file.js";
import { SERVICE_NAME, assertStageName } from "./stack-layout.js";

/**
 * Options every operator CLI takes. The endpoint is explicit (flag or
 * AWS_ENDPOINT_URL) so the same commands run against the local stack or a test
 * server (fauxqs) as against AWS. `--stage local` without an endpoint uses the
 * running `npm start` (the endpoints it writes to .local/stack.json).
 */
export interface AwsTarget {
  readonly stage: string;
  readonly region: string;
  readonly endpoint?: string;
  /** The target is the local stack (`npm start`): no CloudWatch, no Logs Insights. */
  readonly local?: boolean;
}

export const awsTargetOptions = {
  stage: { type: "string", short: "s" },
  region: { type: "string" },
  endpoint: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** Stage name of the stack `npm start` runs. */
export const LOCAL_STAGE = "local";

export function resolveAwsTarget(values: { stage?: string; region?: string; endpoint?: string }, env: NodeJS.ProcessEnv): AwsTarget {
  if (!values.stage) throw new UsageError("--stage is required");
  if (values.stage === LOCAL_STAGE && !values.endpoint && !env.AWS_ENDPOINT_URL) {
    const file = localStackFilePath(env);
    const local = readLocalStackFile(file);
    if (!local) throw new UsageError(`--stage local: no running local stack announced in ${file}; start one with \`npm start\`, or pass --endpoint <url>`);
    // The SDK insists on credentials even for the local endpoints; these never leave the machine.
    process.env.AWS_ACCESS_KEY_ID ??= "local";
    process.env.AWS_SECRET_ACCESS_KEY ??= "local";
    return { stage: LOCAL_STAGE, region: values.region ?? local.region, endpoint: local.awsEndpoint, local: true };
  }
  const region = values.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  if (!region) throw new UsageError("no region: pass --region <region> or set AWS_REGION (the stage's params.region in serverless.yml)");
  const endpoint = values.endpoint ?? env.AWS_ENDPOINT_URL;
  return { stage: assertStageName(values.stage), region, ...(endpoint ? { endpoint } : {}), ...(values.stage === LOCAL_STAGE ? { local: true } : {}) };
}

export class UsageError extends Error {
  override readonly name = "UsageError";
}

export function parsePositiveInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed <= 0) throw new UsageError(`${flag} must be a positive integer, got "${value}"`);
  return parsed;
}

/** `--days` and `--max-objects`, the scan limits `status` and `trace` share, as their options. */
export function scanLimits(values: { readonly days?: string | undefined; readonly "max-objects"?: string | undefined }): { days?: number; maxObjects?: number } {
  const days = parsePositiveInt(values.days, "--days");
  const maxObjects = parsePositiveInt(values["max-objects"], "--max-objects");
  return { ...(days !== undefined ? { days } : {}), ...(maxObjects !== undefined ? { maxObjects } : {}) };
}

export { parseArgs };

/**
 * Runs an operator command when its file is the one executed (not when a test
 * imports it): exit code from `run` (default 0), 2 with the usage on a usage
 * error, 1 with the message on anything else.
 */
export function runWhenExecuted(moduleUrl: string, name: string, usage: string, run: () => Promise<number | undefined>): void {
  if (!process.argv[1] || moduleUrl !== pathToFileURL(resolve(process.argv[1])).href) return;
  run().then(
    (code) => process.exit(code ?? 0),
    (error: unknown) => {
      console.error(error instanceof UsageError ? `${error.message}\n${usage}` : `${name} failed: ${error instanceof Error ? error.message : String(error)}`);
      process.exit(error instanceof UsageError ? 2 : 1);
    },
  );
}

/** The SQS and S3 clients for a target, destroyed when `use` is done. */
export async function withStageClients<T>(target: AwsTarget, use: (clients: { sqs: SQSClient; s3: S3Client & S3BucketApi }) => Promise<T>): Promise<T> {
  const sqs = createSqsClient(target.region, target.endpoint);
  const s3 = createS3Client(target.region, target.endpoint);
  try {
    return await use({ sqs, s3 });
  } finally {
    sqs.destroy();
    s3.destroy();
  }
}

/** The local stack's sandbox service account (infra/local/stack.ts LOCAL_MIXPANEL_CREDENTIALS), never a real one. */
const LOCAL_SERVICE_ACCOUNT = { MIXPANEL_PROJECT_ID: "424242", MIXPANEL_SERVICE_ACCOUNT_USERNAME: "relay-local.sa", MIXPANEL_SERVICE_ACCOUNT_SECRET: "local-service-account-secret" };

/**
 * The environment an operator command that calls Mixpanel with the service account reads its
 * settings from: the caller's, over the running local sandbox's URL and credentials for
 * `--stage local`; elsewhere, without MIXPANEL_PROJECT_ID, the stage's secret
 * `mixpanel-relay/<stage>/mixpanel`. `localMixpanelUrl` is the sandbox, when there is one.
 */
export function mixpanelOperatorEnv(target: AwsTarget, env: NodeJS.ProcessEnv): { env: NodeJS.ProcessEnv; localMixpanelUrl?: string } {
  const localMixpanelUrl = target.local ? readLocalStackFile(localStackFilePath(env))?.mixpanelUrl : undefined;
  return {
    env: {
      ...(localMixpanelUrl ? { ...LOCAL_SERVICE_ACCOUNT, MIXPANEL_API_URL: localMixpanelUrl } : {}),
      ...env,
      RELAY_STAGE: target.stage,
      AWS_REGION: target.region,
      ...(env.MIXPANEL_PROJECT_ID || target.local ? {} : { MIXPANEL_SECRET_ID: `${SERVICE_NAME}/${target.stage}/mixpanel` }),
    },
    ...(localMixpanelUrl ? { localMixpanelUrl } : {}),
  };
}

/** The local sandboxes' GDPR OAuth token, project token and Brevo key (infra/local/stack.ts), never real ones. */
const LOCAL_GDPR = { MIXPANEL_GDPR_TOKEN: "local-gdpr-oauth-token", MIXPANEL_PROJECT_TOKEN: "local-project-token", BREVO_API_KEY: "local-brevo-api-key" };

/**
 * The environment `gdpr:*` reads its hosts and tokens from: the caller's, over the running local
 * stack's Mixpanel GDPR API and Brevo sandbox for `--stage local` (so the command needs no
 * environment there); elsewhere the caller's alone.
 */
export function gdprOperatorEnv(target: AwsTarget, env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const local = target.local ? readLocalStackFile(localStackFilePath(env)) : undefined;
  return {
    ...(local?.mixpanelUrl ? { MIXPANEL_GDPR_URL: `${local.mixpanelUrl}/api/app`, MIXPANEL_GDPR_TOKEN: LOCAL_GDPR.MIXPANEL_GDPR_TOKEN, MIXPANEL_PROJECT_TOKEN: LOCAL_GDPR.MIXPANEL_PROJECT_TOKEN } : {}),
    ...(local?.brevoUrl ? { BREVO_API_URL: local.brevoUrl, BREVO_API_KEY: LOCAL_GDPR.BREVO_API_KEY } : {}),
    ...env,
  };
}
