import { randomUUID } from "node:crypto";
import * as z from "../util/zod.js";
import { formatZodIssues, requireSetting } from "../config/env.js";
import { ConfigError } from "../util/errors.js";
import { realRetryDeps } from "../http/retry.js";
import { mixpanelCredentialsSource } from "../mixpanel/credentials.js";
import { queryBaseUrl } from "../mixpanel/hosts.js";
import { createQueryClient } from "../mixpanel/query.js";
import { MetricUnit, logger, metrics } from "../observability/telemetry.js";
import { protectProperties } from "../pii/policy.js";
import { piiPolicySource } from "../pii/source.js";
import { createQueueSender } from "../queue/sqs-sender.js";
import type { LiteRuntimeContext } from "./lite-context.js";
import type { ExportDeps } from "../cohorts/export.js";
import { rateToMs, scheduleProblems } from "../config/cohort-syncs.js";
import { DEFAULT_TICK_MS } from "../cohorts/tick.js";
import { createCohortStore } from "../cohorts/store.js";
import { createS3Bucket } from "../aws/s3-bucket.js";
import { querySyncDepsFrom } from "./query-syncs.js";

/**
 * Wiring for the two cohort functions from the shared runtime context (env,
 * stage config, the S3 and SQS calls of lib/aws, secret reader). Settings
 * only these functions read are validated here, once.
 */
export const cohortSettingsSchema = z.object({
  /** Query API calls per rolling hour the relay may spend (Mixpanel allows 60 per project). */
  COHORT_QUERIES_PER_HOUR: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(60)), 55),
  /** Cap per export invocation. */
  COHORT_QUERIES_PER_RUN: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(60)), 20),
  /** Query API calls in flight (Mixpanel allows 5 concurrent per project). */
  COHORT_QUERY_CONCURRENCY: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(5)), 3),
  /** A run whose pages are not all delivered after this is given up (old snapshot kept, sync unhealthy). */
  COHORT_DELIVERY_TIMEOUT_HOURS: z._default(z.coerce.number().check(z.positive()), 24),
  /** Deliveries DLQ: permanent refusals are sent here with the response body. Unset = SQS redrive. */
  DELIVERIES_DLQ_URL: z.optional(z.string().check(z.minLength(1))),
  /**
   * The deliveries queue's maxReceiveCount (serverless.yml params.deliveriesMaxReceiveCount):
   * on the last receive a page that still fails is recorded as failed and dead-lettered by
   * the function itself, so the export fails the run at its next tick instead of waiting
   * for COHORT_DELIVERY_TIMEOUT_HOURS.
   */
  DELIVERIES_MAX_RECEIVE_COUNT: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(1000)), 5),
  /** The cohort-export schedule (serverless.yml params.cohortExportSchedule), e.g. "rate(15 minutes)". */
  COHORT_EXPORT_TICK: z.optional(z.string()),
  /** The local stack's tick in ms (it ticks faster than EventBridge's one-minute minimum); wins over COHORT_EXPORT_TICK. */
  COHORT_EXPORT_TICK_MS: z.optional(z.coerce.number().check(z.int(), z.positive())),
  /** Data Views: workspace_id on Query API calls. */
  MIXPANEL_WORKSPACE_ID: z.optional(z.string().check(z.minLength(1))),
});
export type CohortSettings = z.infer<typeof cohortSettingsSchema>;

export function readCohortSettings(source: NodeJS.ProcessEnv = process.env): CohortSettings {
  const parsed = cohortSettingsSchema.safeParse(source);
  if (!parsed.success) throw new ConfigError(`invalid environment: ${formatZodIssues(parsed.error)}`);
  return parsed.data;
}

/** One count per sync (dimension syncId): CohortSyncUnhealthy, CohortSyncAdvanced, … */
export function syncMetric(name: string, value: number, syncId: string): void {
  const single = metrics.singleMetric();
  single.addDimension("syncId", syncId);
  single.addMetric(name, MetricUnit.Count, value);
}

/** The export tick in ms from the settings; a tick that is not a rate() expression is a config error naming the key. */
export function exportTickMs(settings: CohortSettings): number {
  if (settings.COHORT_EXPORT_TICK_MS !== undefined) return settings.COHORT_EXPORT_TICK_MS;
  if (settings.COHORT_EXPORT_TICK === undefined) return DEFAULT_TICK_MS;
  const ms = rateToMs(settings.COHORT_EXPORT_TICK);
  if (ms === undefined) throw new ConfigError(`COHORT_EXPORT_TICK must be a rate(...) expression, got "${settings.COHORT_EXPORT_TICK}"`);
  return ms;
}

export function exportDepsFrom(runtime: LiteRuntimeContext, remainingMs: () => number, settings = readCohortSettings()): ExportDeps {
  const { env } = runtime;
  const tickMs = exportTickMs(settings);
  const problems = scheduleProblems(runtime.config.cohort_syncs, tickMs);
  if (problems.length > 0) throw new ConfigError(`invalid stage config: ${problems.join("; ")}`);
  const store = createCohortStore(createS3Bucket(runtime.aws, runtime.s3), requireSetting(env, "SNAPSHOT_BUCKET"));
  const queueUrl = requireSetting(env, "DELIVERIES_QUEUE_URL");
  const sender = createQueueSender(runtime.sqs, env.SQS_MAX_MESSAGE_BYTES);
  const credentials = mixpanelCredentialsSource(env, runtime.secrets);
  let projectId = env.MIXPANEL_PROJECT_ID ?? "";
  const querySyncs = runtime.config.query_syncs.length > 0
    ? { syncs: runtime.config.query_syncs, deps: querySyncDepsFrom(runtime, store, remainingMs, tickMs, () => projectId, syncMetric) }
    : undefined;
  return {
    ...(querySyncs ? { querySyncs } : {}),
    store,
    async createQueryClient(budget) {
      const creds = await credentials();
      if (!creds.project_id || !creds.service_account_username || !creds.service_account_secret) {
        throw new ConfigError("cohort export needs a Mixpanel service account: project_id, service_account_username, service_account_secret");
      }
      projectId = creds.project_id;
      const pii = await piiPolicySource(runtime.config, env, runtime.secrets)();
      return createQueryClient({
        ...(pii ? { protectMemberProperties: (properties: Record<string, unknown>) => protectProperties(properties, pii) } : {}),
        baseUrl: queryBaseUrl(runtime.config.residency, env.MIXPANEL_QUERY_URL),
        credentials: {
          projectId: creds.project_id,
          username: creds.service_account_username,
          secret: creds.service_account_secret,
          ...(settings.MIXPANEL_WORKSPACE_ID ? { workspaceId: settings.MIXPANEL_WORKSPACE_ID } : {}),
        },
        fetch,
        timeoutMs: env.HTTP_TIMEOUT_MS,
        // Time left for another try: a margin plus the longest a request may take.
        retryDeps: realRetryDeps(() => remainingMs() - 30_000 - env.HTTP_TIMEOUT_MS),
        budget,
        now: Date.now,
      });
    },
    enqueue: (messages) => sender.send(queueUrl, messages.map((m) => JSON.stringify(m))),
    get projectId() {
      return projectId;
    },
    now: Date.now,
    newId: randomUUID,
    remainingMs,
    limits: {
      queriesPerHour: settings.COHORT_QUERIES_PER_HOUR,
      queriesPerRun: settings.COHORT_QUERIES_PER_RUN,
      concurrency: settings.COHORT_QUERY_CONCURRENCY,
      deliveryTimeoutMs: settings.COHORT_DELIVERY_TIMEOUT_HOURS * 3_600_000,
      fetchMarginMs: 45_000,
      emitMarginMs: 120_000,
      tickMs,
    },
    log: {
      info: (message, extra) => logger.info(message, extra ?? {}),
      warn: (message, extra) => logger.warn(message, extra ?? {}),
      error: (message, extra) => logger.error(message, extra ?? {}),
    },
    metric: syncMetric,
  };
}
