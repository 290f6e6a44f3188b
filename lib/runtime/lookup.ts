import * as z from "../util/zod.js";
import { formatZodIssues, requireSetting } from "../config/env.js";
import { ConfigError } from "../util/errors.js";
import { mixpanelCredentialsSource } from "../mixpanel/credentials.js";
import { ingestionBaseUrl } from "../mixpanel/hosts.js";
import { MetricUnit, logger, metrics } from "../observability/telemetry.js";
import { createLookupTablesClient } from "../lookup/client.js";
import type { LookupRefreshDeps } from "../lookup/refresh.js";
import { createLookupStore } from "../lookup/store.js";
import type { LiteRuntimeContext } from "./lite-context.js";

/**
 * Wiring for the lookup-table sync inside the cohort-export function: the snapshot
 * bucket holds its state, the stage config's `source` objects are read through the
 * function's S3 calls, Mixpanel is reached on the ingestion host of the stage's residency.
 */
export const lookupSettingsSchema = z.object({
  /** Replace calls per rolling 24 h the relay may make (Mixpanel allows 100 per project; the rest is left for people). */
  LOOKUP_REPLACES_PER_DAY: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(100)), 90),
});

export function readLookupSettings(source: NodeJS.ProcessEnv = process.env): z.infer<typeof lookupSettingsSchema> {
  const parsed = lookupSettingsSchema.safeParse(source);
  if (!parsed.success) throw new ConfigError(`invalid environment: ${formatZodIssues(parsed.error)}`);
  return parsed.data;
}

/** One count per table (dimension lookupTable): LookupTableReplaced, LookupTableUnchanged, LookupTableRefused, … */
export function lookupMetric(name: string, value: number, tableId: string): void {
  const single = metrics.singleMetric();
  single.addDimension("lookupTable", tableId);
  single.addMetric(name, MetricUnit.Count, value);
}

export function lookupDepsFrom(runtime: LiteRuntimeContext, settings = readLookupSettings()): LookupRefreshDeps {
  const { env, s3 } = runtime;
  const credentials = mixpanelCredentialsSource(env, runtime.secrets);
  return {
    store: createLookupStore(s3, requireSetting(env, "SNAPSHOT_BUCKET")),
    openSource: async (table) => [await s3.getObject(table.source.bucket, table.source.key)],
    async client() {
      const creds = await credentials();
      if (!creds.project_id || !creds.service_account_username || !creds.service_account_secret) {
        throw new ConfigError("lookup tables need a Mixpanel service account: project_id, service_account_username, service_account_secret");
      }
      return createLookupTablesClient({
        baseUrl: ingestionBaseUrl(runtime.config.residency, env.MIXPANEL_API_URL),
        credentials: { projectId: creds.project_id, username: creds.service_account_username, secret: creds.service_account_secret },
        fetch,
        timeoutMs: Math.max(env.HTTP_TIMEOUT_MS, 120_000),
        now: Date.now,
      });
    },
    now: Date.now,
    replacesPerDay: settings.LOOKUP_REPLACES_PER_DAY,
    log: {
      info: (message, extra) => logger.info(message, extra ?? {}),
      warn: (message, extra) => logger.warn(message, extra ?? {}),
      error: (message, extra) => logger.error(message, extra ?? {}),
    },
    metric: lookupMetric,
  };
}
