import { ConfigError } from "../util/errors.js";
import { apiKeySecretSchema } from "../destinations/http.js";
import type { EnvelopeConsumerDeps } from "../queue/envelope-consumer.js";
import { DEADLINE_MARGIN_MS, sqsRequeue } from "./forwarder.js";
import { realRetryDeps } from "../http/retry.js";
import { logger } from "../observability/telemetry.js";
import { type LiteRuntimeContext, rejectedStoreFor } from "./lite-context.js";
import { DEFAULT_BREVO_API_URL, createBrevoClient, type BrevoClient, type BrevoClientOptions } from "../brevo/client.js";
import { LOCAL_STAGE } from "../config/stage.js";
import type { SecretReader } from "../secrets/secrets.js";
import type { BrevoConfig } from "../config/brevo.js";
import { createBrevoSend } from "../forwarder/brevo.js";
import { cachedSuppression, readSuppressedDigests } from "../privacy/suppression.js";

/**
 * Wires the Brevo forwarder from the runtime context (once per container): the `brevo` block
 * is required, the API key comes from BREVO_API_KEY (local stack) or the secret
 * `brevo.api_key_secret` (cached with the TTL of lib/secrets), the base URL from BREVO_API_URL.
 */
export function brevoConfigOf(runtime: LiteRuntimeContext): BrevoConfig {
  const config = runtime.config.brevo;
  if (!config) throw new ConfigError("stage config has no brevo block, but the Brevo forwarder is deployed");
  return config;
}

export interface BrevoClientSettings {
  readonly config: BrevoConfig;
  /** The stage the client runs for: the local stage may reach the loopback sandbox over plain http. */
  readonly stage: string;
  /** BREVO_API_KEY (the local stack) instead of the secret `brevo.api_key_secret`. */
  readonly apiKey?: string;
  /** BREVO_API_URL (the local sandbox) instead of Brevo's API. */
  readonly apiUrl?: string;
  readonly secrets: SecretReader;
  readonly timeoutMs: number;
  /** Milliseconds left for starting another try (the deadline minus margins). */
  readonly remainingMs: () => number;
  readonly onRetry?: BrevoClientOptions["onRetry"];
}

/** The one way a Brevo client is built (the Brevo forwarder, `npm run gdpr:delete`). */
export function createBrevoClientFor(settings: BrevoClientSettings): BrevoClient {
  const { apiKey, config } = settings;
  return createBrevoClient({
    addressPolicy: { allowPrivate: false, localStage: settings.stage === LOCAL_STAGE },
    baseUrl: settings.apiUrl ?? DEFAULT_BREVO_API_URL,
    apiKey: async () => apiKey ?? (await settings.secrets.getJson(config.api_key_secret, apiKeySecretSchema)).api_key,
    timeoutMs: settings.timeoutMs,
    retryDeps: realRetryDeps(settings.remainingMs),
    now: Date.now,
    ...(settings.onRetry ? { onRetry: settings.onRetry } : {}),
  });
}

export function brevoClientFrom(runtime: LiteRuntimeContext, remainingMs: () => number): BrevoClient {
  const { env } = runtime;
  return createBrevoClientFor({
    config: brevoConfigOf(runtime),
    stage: env.RELAY_STAGE,
    ...(env.BREVO_API_KEY !== undefined ? { apiKey: env.BREVO_API_KEY } : {}),
    ...(env.BREVO_API_URL !== undefined ? { apiUrl: env.BREVO_API_URL } : {}),
    secrets: runtime.secrets,
    timeoutMs: env.HTTP_TIMEOUT_MS,
    // A try may take up to HTTP_TIMEOUT_MS: only start one when it can finish before the deadline.
    remainingMs: () => remainingMs() - DEADLINE_MARGIN_MS - env.HTTP_TIMEOUT_MS,
    onRetry: (what, error, delayMs) => logger.warn("Brevo call will be retried", { what, status: error.status, delayMs: Math.round(delayMs) }),
  });
}

export function brevoForwarderDepsFrom(runtime: LiteRuntimeContext, remainingMs: () => number): EnvelopeConsumerDeps {
  const { env } = runtime;
  const config = brevoConfigOf(runtime);
  const snapshotBucket = env.SNAPSHOT_BUCKET;
  const send = createBrevoSend({
    client: brevoClientFrom(runtime, remainingMs),
    // The client's own bound: a try may take up to HTTP_TIMEOUT_MS before the deadline margin.
    timeLeftMs: () => remainingMs() - DEADLINE_MARGIN_MS - env.HTTP_TIMEOUT_MS,
    now: Date.now,
    config,
    identityMode: runtime.config.identity_mode,
    eventsBatchSize: env.BREVO_EVENTS_BATCH_SIZE,
    companyIds: new Map(),
    sentInsertIds: new Map(),
    pendingLinks: new Map(),
    ...(snapshotBucket
      ? { suppressed: cachedSuppression(() => readSuppressedDigests(runtime.s3, snapshotBucket), env.SECRETS_TTL_SECONDS * 1000, Date.now) }
      : {}),
  });
  return {
    send,
    rejected: rejectedStoreFor(runtime),
    rejectedCode: "brevo_rejected",
    stageOfFailure: "brevo",
    destination: "brevo",
    now: Date.now,
    ...(env.BREVO_QUEUE_URL && env.BREVO_DLQ_URL
      ? { requeue: sqsRequeue(runtime.sqs, env.BREVO_QUEUE_URL, env.BREVO_DLQ_URL, env.FORWARDER_MAX_REQUEUES) }
      : {}),
  };
}
