import type { SqsApi } from "../aws/sqs.js";
import { realRetryDeps } from "../http/retry.js";
import { mixpanelCredentialsSource } from "../mixpanel/credentials.js";
import { ingestionBaseUrl } from "../mixpanel/hosts.js";
import { createIngestionClient } from "../mixpanel/ingestion.js";
import { logger } from "../observability/telemetry.js";
import { type LiteRuntimeContext, rejectedStoreFor } from "./lite-context.js";
import type { ForwarderDeps } from "../forwarder/mixpanel.js";
import type { RequeueTarget } from "../queue/envelope-consumer.js";

/** Stop retrying this long before the Lambda deadline so failures can still be reported. */
export const DEADLINE_MARGIN_MS = 5_000;

export function forwarderDepsFrom(runtime: LiteRuntimeContext, remainingMs: () => number): ForwarderDeps {
  const { env, config } = runtime;
  const credentials = mixpanelCredentialsSource(env, runtime.secrets);
  return {
    client: createIngestionClient({
      fetch: globalThis.fetch,
      baseUrl: ingestionBaseUrl(config.residency, env.MIXPANEL_API_URL),
      credentials,
      importMaxBytes: env.IMPORT_MAX_BYTES,
      concurrency: env.IMPORT_CONCURRENCY,
      timeoutMs: env.HTTP_TIMEOUT_MS,
      // A try may take up to HTTP_TIMEOUT_MS: only start one when it can finish before the deadline.
      retryDeps: realRetryDeps(() => remainingMs() - DEADLINE_MARGIN_MS - env.HTTP_TIMEOUT_MS),
      nowMs: Date.now,
      onRetry: (endpoint, error, delayMs) =>
        logger.warn("Mixpanel call will be retried", { endpoint, status: error.status, delayMs: Math.round(delayMs) }),
    }),
    rejected: rejectedStoreFor(runtime),
    maxMessageBytes: env.SQS_MAX_MESSAGE_BYTES,
    ...(env.EVENTS_QUEUE_URL && env.EVENTS_DLQ_URL
      ? { requeue: sqsRequeue(runtime.sqs, env.EVENTS_QUEUE_URL, env.EVENTS_DLQ_URL, env.FORWARDER_MAX_REQUEUES) }
      : {}),
  };
}

export function sqsRequeue(sqs: SqsApi, queueUrl: string, deadLetterUrl: string, maxRequeues: number): RequeueTarget {
  return {
    maxRequeues,
    async send(body, delaySeconds) {
      await sqs.sendMessage(queueUrl, body, delaySeconds);
    },
    async deadLetter(body) {
      await sqs.sendMessage(deadLetterUrl, body);
    },
  };
}
