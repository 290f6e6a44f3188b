import { ConfigError, RetryableError, UpstreamRejectedError, describeError } from "../util/errors.js";
import { type LookupTable, ON_UPLOAD } from "../config/lookup-tables.js";
import { rateToMs } from "../config/cohort-syncs.js";
import { type LookupCsvInput, type LookupCsvProgress, type LookupCsvSummary, LookupCsvError, checkLookupCsv } from "./csv-check.js";
import type { LookupTablesClient } from "./client.js";
import type { LookupState, LookupStore } from "./store.js";

/**
 * One lookup-table run: read the CSV, check it (csv-check.ts) before any call, skip the
 * replace when the file is the one Mixpanel last accepted, else replace it within the
 * project's replace budget (docs/vendors/mixpanel-api.md "Keeping lookup tables fresh":
 * at most 100 replace calls per rolling 24 h; a refused replace costs a call too).
 * The call is counted in the store before it is made, so a run that dies mid-call never
 * lets the next one believe the call is still there. One table's failure is its own:
 * the others still run.
 */
export const DAY_MS = 86_400_000;

export interface LookupLog {
  info(message: string, extra?: Record<string, unknown>): void;
  warn(message: string, extra?: Record<string, unknown>): void;
  error(message: string, extra?: Record<string, unknown>): void;
}

export interface LookupRefreshDeps {
  readonly store: LookupStore;
  /** The table's CSV object as chunks. */
  openSource(table: LookupTable): Promise<LookupCsvInput>;
  client(): Promise<LookupTablesClient>;
  readonly now: () => number;
  /** Replace calls per rolling 24 h this relay may make (Mixpanel: 100 per project). */
  readonly replacesPerDay: number;
  readonly log: LookupLog;
  readonly metric: (name: string, value: number, tableId: string) => void;
}

export type LookupOutcome = "replaced" | "unchanged" | "refused" | "budget_spent" | "failed" | "not_due" | "checked";

export interface LookupReport {
  outcome: LookupOutcome;
  detail?: string;
  rows?: number;
  bytes?: number;
}

export interface RefreshOptions {
  /** Check only: no replace call, no state written. */
  readonly dryRun?: boolean;
  readonly onProgress?: LookupCsvProgress;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Takes one replace call from the rolling 24-hour budget and records it, or answers false. */
async function takeReplaceCall(deps: LookupRefreshDeps): Promise<boolean> {
  const now = deps.now();
  const recent = (await deps.store.readReplaces()).filter((at) => now - at < DAY_MS);
  if (recent.length >= deps.replacesPerDay) return false;
  await deps.store.writeReplaces([...recent, now]);
  return true;
}

export async function refreshLookupTable(table: LookupTable, deps: LookupRefreshDeps, options: RefreshOptions = {}): Promise<LookupReport> {
  const state = await deps.store.readState(table.id);
  const finish = async (report: LookupReport, changes: Partial<LookupState> = {}): Promise<LookupReport> => {
    deps.metric(`LookupTable${report.outcome.replace(/(^|_)([a-z])/g, (_, _sep: string, letter: string) => letter.toUpperCase())}`, 1, table.id);
    if (options.dryRun) return report;
    await deps.store.writeState(table.id, {
      ...state,
      ...changes,
      checked_at: iso(deps.now()),
      last_outcome: report.outcome,
      ...(report.detail ? { last_detail: report.detail } : { last_detail: undefined }),
    });
    return report;
  };

  let summary: LookupCsvSummary;
  try {
    summary = await checkLookupCsv(await deps.openSource(table), undefined, options.onProgress);
  } catch (error) {
    if (!(error instanceof LookupCsvError)) throw error;
    deps.log.error("lookup table file refused before any call", { tableId: table.id, reason: error.message });
    return finish({ outcome: "refused", detail: error.message });
  }
  const sized = { rows: summary.rows, bytes: summary.bytes };
  if (summary.sha256 === state.replaced_sha256) {
    deps.log.info("lookup table file unchanged since the last replace; no call", { tableId: table.id, ...sized });
    return finish({ outcome: "unchanged", ...sized });
  }
  if (options.dryRun) return finish({ outcome: "checked", detail: "valid; would replace", ...sized });
  if (!(await takeReplaceCall(deps))) {
    const detail = `the ${deps.replacesPerDay} replace calls of the last 24 h are spent; the next run tries again`;
    deps.log.warn("lookup table replace postponed", { tableId: table.id, detail });
    return finish({ outcome: "budget_spent", detail, ...sized });
  }
  try {
    await (await deps.client()).replace(table.table_id, summary.gzipBody);
  } catch (error) {
    const detail = describeError(error);
    if (error instanceof RetryableError && error.status === 429) {
      deps.log.warn("Mixpanel answered 429 to a lookup table replace (its 100 per 24 h are spent)", { tableId: table.id, detail });
      return finish({ outcome: "budget_spent", detail, ...sized });
    }
    if (error instanceof UpstreamRejectedError) {
      deps.log.error("Mixpanel refused the lookup table file; the table is unchanged", { tableId: table.id, detail });
      return finish({ outcome: "refused", detail, ...sized });
    }
    if (error instanceof RetryableError || error instanceof ConfigError) {
      deps.log.error("lookup table replace failed; the next run tries again", { tableId: table.id, detail });
      return finish({ outcome: "failed", detail, ...sized });
    }
    throw error;
  }
  deps.log.info("lookup table replaced", { tableId: table.id, mixpanelTableId: table.table_id, ...sized });
  return finish({ outcome: "replaced", ...sized }, { replaced_sha256: summary.sha256, replaced_at: iso(deps.now()), replaced_rows: summary.rows });
}

/** Runs each table alone: a failure (S3 down, bad credentials) is reported for that table only. */
async function refreshEach(tables: readonly LookupTable[], deps: LookupRefreshDeps): Promise<Record<string, LookupReport>> {
  const reports: Record<string, LookupReport> = {};
  for (const table of tables) {
    try {
      reports[table.id] = await refreshLookupTable(table, deps);
    } catch (error) {
      const detail = describeError(error);
      deps.log.error("lookup table run failed", { tableId: table.id, detail });
      deps.metric("LookupTableFailed", 1, table.id);
      reports[table.id] = { outcome: "failed", detail };
    }
  }
  return reports;
}

/**
 * The scheduled tables due at this tick: one interval after the last look, give or
 * take half a tick (so `rate(1 day)` under a 15-minute tick runs daily, not daily plus a tick).
 */
export async function refreshDueLookupTables(tables: readonly LookupTable[], deps: LookupRefreshDeps, tickMs: number): Promise<Record<string, LookupReport>> {
  const now = deps.now();
  const due: LookupTable[] = [];
  const reports: Record<string, LookupReport> = {};
  for (const table of tables) {
    if (table.schedule === ON_UPLOAD) continue;
    const interval = rateToMs(table.schedule) ?? DAY_MS;
    const checkedAt = Date.parse((await deps.store.readState(table.id)).checked_at ?? "");
    if (Number.isFinite(checkedAt) && now - checkedAt < interval - tickMs / 2) reports[table.id] = { outcome: "not_due" };
    else due.push(table);
  }
  return { ...reports, ...(await refreshEach(due, deps)) };
}

export interface UploadedObject {
  readonly bucket: string;
  /** The object key, already URL-decoded. */
  readonly key: string;
}

/** The `on_upload` tables whose source object was just written. */
export async function refreshUploadedLookupTables(
  tables: readonly LookupTable[],
  uploads: readonly UploadedObject[],
  deps: LookupRefreshDeps,
): Promise<Record<string, LookupReport>> {
  const matching = tables.filter(
    (table) => table.schedule === ON_UPLOAD && uploads.some((upload) => upload.bucket === table.source.bucket && upload.key === table.source.key),
  );
  for (const upload of uploads) {
    if (!matching.some((table) => table.source.bucket === upload.bucket && table.source.key === upload.key)) {
      deps.log.warn("an uploaded object names no on_upload lookup table; ignored", { bucket: upload.bucket, key: upload.key });
    }
  }
  return refreshEach(matching, deps);
}
