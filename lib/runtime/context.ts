import { createS3Client, createSqsClient } from "../aws/sdk-clients.js";
import type { S3Client } from "@aws-sdk/client-s3";
import type { SQSClient } from "@aws-sdk/client-sqs";
import type { SqsApi } from "../aws/sqs.js";
import { type Env, readEnv, requireSetting } from "../config/env.js";
import { type StageConfig, loadStageConfig, stageConfigPath } from "../config/stage.js";
import { createSecretReader, type SecretReader } from "../secrets/secrets.js";

export { once } from "./once.js";

/**
 * What the cohort functions build once per container (cold start): validated env and
 * stage config, AWS SDK clients with an explicit endpoint when one is set, the secret
 * reader with its TTL cache. lib/cohorts still calls the SDK's S3 and SQS commands;
 * the intake, forwarder and Currents reader use lib/runtime/lite-context.ts instead,
 * which keeps the SDK out of their bundles (issue 12).
 */
export interface RuntimeContext {
  readonly env: Env;
  readonly config: StageConfig;
  readonly sqs: SQSClient & SqsApi;
  readonly s3: S3Client;
  readonly secrets: SecretReader;
}

export function createRuntimeContext(source: NodeJS.ProcessEnv = process.env): RuntimeContext {
  const env = readEnv(source);
  const config = loadStageConfig(stageConfigPath(env.RELAY_STAGE, env.RELAY_CONFIG_FILE), env.RELAY_STAGE);
  return {
    env,
    config,
    sqs: createSqsClient(env.AWS_REGION, env.AWS_ENDPOINT_URL),
    s3: createS3Client(env.AWS_REGION, env.AWS_ENDPOINT_URL),
    secrets: createSecretReader({
      region: env.AWS_REGION,
      ttlSeconds: env.SECRETS_TTL_SECONDS,
      ...(env.SECRETS_ENDPOINT_URL ? { endpoint: env.SECRETS_ENDPOINT_URL } : {}),
    }),
  };
}

/**
 * The Brevo queue for the fan-out: required (named in the error) when the stage config has a
 * `brevo` block with any kind enabled, unused otherwise.
 */
export function brevoQueueUrlFor(runtime: Pick<RuntimeContext, "config" | "env">): string | undefined {
  const sync = runtime.config.brevo?.sync;
  if (!sync || !(sync.events || sync.profiles || sync.groups)) return undefined;
  return requireSetting(runtime.env, "BREVO_QUEUE_URL");
}
