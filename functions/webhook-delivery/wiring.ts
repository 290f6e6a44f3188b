import { requireSetting } from "../../lib/config/env.js";
import { LOCAL_STAGE } from "../../lib/config/stage.js";
import { type CohortSettings, readCohortSettings, syncMetric } from "../../lib/runtime/cohorts.js";
import { createS3Bucket } from "../../lib/aws/s3-bucket.js";
import { createCohortStore } from "../../lib/cohorts/store.js";
import type { DeliveryDeps } from "../../lib/destinations/deliver.js";
import { createDestinationNetwork } from "../../lib/destinations/send.js";
import { RetryableError } from "../../lib/util/errors.js";
import { realRetryDeps } from "../../lib/http/retry.js";
import { logger } from "../../lib/observability/telemetry.js";
import { cachedSuppression, readSuppressedDigests } from "../../lib/privacy/suppression.js";
import { newBrevoRateGates } from "../../lib/brevo/rate-limits.js";
import type { LiteRuntimeContext } from "../../lib/runtime/lite-context.js";

/**
 * webhook-delivery's wiring from the shared runtime context, built once per
 * container: the store, the guarded destination network (plain-http loopback
 * receivers only on the local stage), the Brevo rate gate, the DLQ sender.
 */
export function deliveryDepsFrom(
  runtime: LiteRuntimeContext,
  remainingMs: () => number,
  settings: CohortSettings = readCohortSettings(),
): DeliveryDeps {
  const { env } = runtime;
  const dlq = settings.DELIVERIES_DLQ_URL;
  return {
    store: createCohortStore(createS3Bucket(runtime.aws, runtime.s3), requireSetting(env, "SNAPSHOT_BUCKET")),
    syncs: runtime.config.cohort_syncs,
    secrets: runtime.secrets,
    network: createDestinationNetwork({ localStage: env.RELAY_STAGE === LOCAL_STAGE }),
    timeoutMs: env.HTTP_TIMEOUT_MS,
    // Time left for another call or wait: a margin plus the longest a request may take.
    retryDeps: realRetryDeps(() => remainingMs() - 10_000 - env.HTTP_TIMEOUT_MS),
    now: Date.now,
    warn: (message, extra) => logger.warn(message, extra ?? {}),
    error: (message, extra) => logger.error(message, extra ?? {}),
    metric: syncMetric,
    maxReceives: settings.DELIVERIES_MAX_RECEIVE_COUNT,
    // Built once per container: the Brevo rate gate outlives an invocation.
    brevoGate: newBrevoRateGates(),
    brevoSuppressed: cachedSuppression(() => readSuppressedDigests(runtime.s3, requireSetting(env, "SNAPSHOT_BUCKET")), env.SECRETS_TTL_SECONDS * 1000, Date.now),
    ...(dlq
      ? {
          deadLetter: async (body: string) => {
            try {
              await runtime.sqs.sendMessage(dlq, body.slice(0, 250_000));
            } catch (error) {
              throw new RetryableError(`cannot send to the deliveries DLQ: ${String(error)}`);
            }
          },
        }
      : {}),
  };
}
