import type { AwsTarget, CallPath } from "../aws/aws-call.js";
import { type S3Api, createS3 } from "../aws/s3.js";
import { type SqsApi, createSqs } from "../aws/sqs.js";
import { type Env, readEnv, requireSetting } from "../config/env.js";
import { type StageConfig, loadStageConfig, stageConfigPath } from "../config/stage.js";
import { createRejectedStore, type RejectedStore } from "../queue/rejected-store.js";
import { createSecretReader, type SecretReader } from "../secrets/secrets.js";

export { once } from "../util/once.js";

/**
 * What every function builds once per container (cold start): validated env and stage
 * config, the SQS and S3 calls it makes (lib/aws: the AWS SDK's clients, S3's loaded at its
 * first call), the secret reader with its TTL cache. `path` sets the attempts and timeouts of
 * the AWS calls (lib/aws/aws-call.ts): the intake answers API Gateway within 30 s.
 */
export interface LiteRuntimeContext {
  readonly env: Env;
  readonly config: StageConfig;
  /** Region and endpoint of the AWS calls, for the clients only some functions need (lib/aws/s3-bucket.ts). */
  readonly aws: AwsTarget;
  readonly sqs: SqsApi;
  readonly s3: S3Api;
  readonly secrets: SecretReader;
}

export function createLiteRuntimeContext(source: NodeJS.ProcessEnv = process.env, path: CallPath = "consumer"): LiteRuntimeContext {
  const env = readEnv(source);
  const config = loadStageConfig(stageConfigPath(env.RELAY_STAGE, env.RELAY_CONFIG_FILE), env.RELAY_STAGE);
  const aws = { region: env.AWS_REGION, ...(env.AWS_ENDPOINT_URL ? { endpoint: env.AWS_ENDPOINT_URL } : {}) };
  return {
    env,
    config,
    aws,
    sqs: createSqs(aws, path),
    s3: createS3(aws, path),
    secrets: createSecretReader({
      region: env.AWS_REGION,
      ttlSeconds: env.SECRETS_TTL_SECONDS,
      ...(env.SECRETS_ENDPOINT_URL ? { endpoint: env.SECRETS_ENDPOINT_URL } : {}),
    }),
  };
}

export function rejectedStoreFor(runtime: Pick<LiteRuntimeContext, "env" | "s3">): RejectedStore {
  return createRejectedStore({
    s3: runtime.s3,
    bucket: requireSetting(runtime.env, "REJECTED_BUCKET"),
    prefix: runtime.env.REJECTED_PREFIX,
    stage: runtime.env.RELAY_STAGE,
    now: () => new Date(),
  });
}

/**
 * The Brevo queue for the fan-out: required (named in the error) when the stage config has a
 * `brevo` block with any kind enabled, unused otherwise.
 */
export function brevoQueueUrlFor(runtime: Pick<LiteRuntimeContext, "config" | "env">): string | undefined {
  const sync = runtime.config.brevo?.sync;
  if (!sync || !(sync.events || sync.profiles || sync.groups)) return undefined;
  return requireSetting(runtime.env, "BREVO_QUEUE_URL");
}
