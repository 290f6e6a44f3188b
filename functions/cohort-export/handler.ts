import * as z from "../../lib/util/zod.js";
import { type ExportReport, runCohortExport } from "../../lib/cohorts/export.js";
import { exportDepsFrom } from "../../lib/runtime/cohorts.js";
import { lookupDepsFrom } from "../../lib/runtime/lookup.js";
import { type LookupReport, refreshDueLookupTables, refreshUploadedLookupTables } from "../../lib/lookup/refresh.js";
import { uploadedObjects } from "../../lib/lookup/uploads.js";
import { DEFAULT_TICK_MS } from "../../lib/cohorts/tick.js";
import { invocationClock, withTelemetry } from "../../lib/observability/handler.js";
import { logger } from "../../lib/observability/telemetry.js";
import { createLiteRuntimeContext, once } from "../../lib/runtime/lite-context.js";

/**
 * EventBridge schedule (e.g. rate(5 minutes)) → one export tick, then the lookup tables
 * that are due (lib/lookup/refresh.ts). An S3 ObjectCreated notification (an `on_upload`
 * lookup table's CSV was written) → that table only. A rule may pass
 * `{"force": ["sync-id"], "full": true}` as input to run a sync now / force a full resync
 * (`npm run cohorts:export` does this; see infra/cohorts-cli.ts).
 */
const runtime = once(() => createLiteRuntimeContext());
const clock = invocationClock();
/** Once per container: clients, settings (parsed at cold start), credential cache; time read per invocation. */
const deps = once(() => exportDepsFrom(runtime(), clock.remainingMs));
const lookupDeps = once(() => lookupDepsFrom(runtime()));

const eventSchema = z.looseObject({
  force: z.optional(z.array(z.string().check(z.minLength(1)))),
  full: z.optional(z.boolean()),
  /** Process these syncs even when disabled, without starting a new run (the CLI's follow-up ticks). */
  include: z.optional(z.array(z.string().check(z.minLength(1)))),
  /** `npm run queries:run`: run these query syncs now; `dry_run` sends nothing; `only` skips the cohort work. */
  query_syncs: z.optional(
    z.object({
      force: z.optional(z.array(z.string().check(z.minLength(1)))),
      dry_run: z.optional(z.boolean()),
      only: z.optional(z.boolean()),
    }),
  ),
});

/** A tick's report; an upload notification runs no cohort sync (`syncs` empty, no Query API call). */
type HandlerReport = Partial<Omit<ExportReport, "syncs">> & Pick<ExportReport, "syncs"> & { lookupTables?: Record<string, LookupReport> };

export const handler = withTelemetry(
  clock,
  async (event: unknown): Promise<HandlerReport> => {
    const uploads = uploadedObjects(event);
    if (uploads) {
      const lookupTables = await refreshUploadedLookupTables(runtime().config.lookup_tables, uploads, lookupDeps());
      logger.info("lookup tables: uploaded files", { lookupTables });
      return { syncs: {}, lookupTables };
    }
    const parsed = eventSchema.safeParse(event ?? {});
    const input = parsed.success ? parsed.data : {};
    const ctx = runtime();
    const report = await runCohortExport(ctx.config.cohort_syncs, deps(), {
      ...(input.force ? { force: input.force } : {}),
      ...(input.full !== undefined ? { full: input.full } : {}),
      ...(input.include ? { include: input.include } : {}),
      ...(input.query_syncs
        ? { querySyncs: { ...(input.query_syncs.force ? { force: input.query_syncs.force } : {}), dryRun: input.query_syncs.dry_run === true, only: input.query_syncs.only === true } }
        : {}),
    });
    logger.info("cohort export tick", { queries: report.queries, budgetLeft: report.budgetLeft, syncs: report.syncs, querySyncs: report.querySyncs });
    if (ctx.config.lookup_tables.length === 0) return report;
    const lookupTables = await refreshDueLookupTables(ctx.config.lookup_tables, lookupDeps(), deps().limits.tickMs ?? DEFAULT_TICK_MS);
    logger.info("lookup tables: scheduled", { lookupTables });
    return { ...report, lookupTables };
  },
  // State is checkpointed after every page; the next tick resumes.
  { failureMessage: "cohort export failed" },
);
