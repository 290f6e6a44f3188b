import type { S3Client } from "@aws-sdk/client-s3";
import type { SQSClient } from "@aws-sdk/client-sqs";
import { type Env, readEnv } from "../config/env.js";
import { type StageConfig, loadStageConfig, stageConfigPath } from "../config/stage.js";
import { createRejectedStore, createS3Client, type RejectedStore } from "../queue/rejected-store.js";
import { createSqsClient } from "../queue/sqs-sender.js";
import { createSecretReader, type SecretReader } from "../secrets/secrets.js";
import { requireSetting } from "../config/env.js";

/**
 * What every function builds once per container (cold start): validated env and
 * stage config, AWS SDK clients with an explicit endpoint when one is set, the
 * secret reader with its TTL cache.
 */
export interface RuntimeContext {
  readonly env: Env;
  readonly config: StageConfig;
  readonly sqs: SQSClient;
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

export function rejectedStoreFor(runtime: RuntimeContext): RejectedStore {
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
export function brevoQueueUrlFor(runtime: RuntimeContext): string | undefined {
  const sync = runtime.config.brevo?.sync;
  if (!sync || !(sync.events || sync.profiles || sync.groups)) return undefined;
  return requireSetting(runtime.env, "BREVO_QUEUE_URL");
}

/**
 * Builds a value once and remembers it; if building throws (bad config), the
 * error is rethrown on every call so each request fails loudly instead of the
 * container dying at init with an opaque 500.
 */
export function once<T>(build: () => T): () => T {
  let state: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
  return () => {
    if (!state) {
      try {
        state = { ok: true, value: build() };
      } catch (error) {
        state = { ok: false, error };
      }
    }
    if (state.ok) return state.value;
    throw state.error;
  };
}
