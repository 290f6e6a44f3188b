import { ConfigError } from "../errors.js";
import { apiKeySecretSchema } from "../destinations/http.js";
import type { EnvelopeConsumerDeps } from "../queue/envelope-consumer.js";
import { DEADLINE_MARGIN_MS, sqsRequeue } from "./forwarder.js";
import { realRetryDeps } from "../http/retry.js";
import { logger } from "../observability/telemetry.js";
import { type LiteRuntimeContext, rejectedStoreFor } from "./lite-context.js";
import { DEFAULT_BREVO_API_URL, createBrevoClient, type BrevoClient } from "../brevo/client.js";
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

export function brevoClientFrom(runtime: LiteRuntimeContext, remainingMs: () => number): BrevoClient {
  const { env } = runtime;
  const config = brevoConfigOf(runtime);
  const localKey = env.BREVO_API_KEY;
  return createBrevoClient({
    fetch: globalThis.fetch,
    baseUrl: env.BREVO_API_URL ?? DEFAULT_BREVO_API_URL,
    apiKey: async () => localKey ?? (await runtime.secrets.getJson(config.api_key_secret, apiKeySecretSchema)).api_key,
    timeoutMs: env.HTTP_TIMEOUT_MS,
    // A try may take up to HTTP_TIMEOUT_MS: only start one when it can finish before the deadline.
    retryDeps: realRetryDeps(() => remainingMs() - DEADLINE_MARGIN_MS - env.HTTP_TIMEOUT_MS),
    now: Date.now,
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
