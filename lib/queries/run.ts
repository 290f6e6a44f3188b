import { BudgetExhaustedError, type QueryClient } from "../mixpanel/query.js";
import { describeError } from "../util/errors.js";
import type { QuerySync } from "../config/query-syncs.js";
import { planRows, destinationValues } from "./diff.js";
import { type QueryDeliveryDeps, deliverRows } from "./deliver.js";
import { type QueryRow, type RowRejection, engageRows, readRows } from "./rows.js";
import { isQueryDue } from "./schedule.js";
import type { QueryRunOutcome, QueryRunReport, QueryStore } from "./store.js";

/**
 * One tick of the query syncs, run by the cohort-export function after its cohort work, with
 * the same Query API budget (Mixpanel: 60 queries per hour and 5 concurrent per project, Engage
 * and JQL alike; docs/vendors/mixpanel-api.md "Query extracts"). For each due (or forced) sync:
 *
 *  1. read the whole result: Engage pages (`where`, `output_properties`, `session_id` + `page`)
 *     or one JQL call, at most `max_rows` rows; a spent budget leaves the sync due for the next
 *     tick without stamping it;
 *  2. judge each row alone (rows.ts): bad rows go to the rejected store with their reason;
 *  3. `send: "changed"`: drop rows whose mapped values hash as last delivered (diff.ts);
 *  4. deliver (deliver.ts) and remember the hash of every row the destination took.
 *
 * `dryRun` stops after 3: nothing is sent, stored or stamped; the report lists the rows.
 */
export type QueryTickOutcome = QueryRunOutcome | "disabled" | "not_due";

export interface QueryTickReport {
  readonly outcome: QueryTickOutcome;
  readonly rows_read: number;
  readonly sent: number;
  readonly unchanged: number;
  readonly rejected: number;
  readonly not_delivered: number;
  readonly queries: number;
  readonly detail?: string;
  /** Dry run: the rows that would be sent (at most DRY_RUN_SAMPLE) and their count. */
  readonly would_send?: { readonly count: number; readonly rows: readonly { key: string; values: Record<string, unknown> }[] };
  /** Dry run: the rows that would be refused, with their reasons (at most DRY_RUN_SAMPLE). */
  readonly would_reject?: readonly { index: number; code: string; reason: string }[];
}

export const DRY_RUN_SAMPLE = 100;

export interface QueryTickOptions {
  /** Run these query syncs now, even when not due or disabled. */
  readonly force?: readonly string[];
  /** With `force`: report what would be sent, send nothing, change nothing. */
  readonly dryRun?: boolean;
  /** Skip the tick's cohort work (the operator's run of one query sync). */
  readonly only?: boolean;
}

export interface QueryRunDeps {
  readonly store: QueryStore;
  readonly delivery: QueryDeliveryDeps;
  readonly readScript: (path: string) => Promise<string>;
  /** Keeps refused rows where an operator can read them (the rejected store). */
  readonly storeRejected: (sync: QuerySync, runId: string, rows: readonly RowRejection[]) => Promise<void>;
  readonly metric: (name: string, value: number, syncId: string) => void;
  readonly log: {
    info(message: string, extra?: Record<string, unknown>): void;
    error(message: string, extra?: Record<string, unknown>): void;
  };
  readonly now: () => number;
  readonly newId: () => string;
  readonly tickMs: number;
}

/** What the export tick lends the query syncs: its budgeted Query API client. */
export interface QueryTickBudget {
  queryClient(): Promise<QueryClient>;
  /** Calls left in this tick's budget. */
  remaining(): number;
  readonly startedAt: number;
}

const empty = { rows_read: 0, sent: 0, unchanged: 0, rejected: 0, not_delivered: 0, queries: 0 };

class RowLimitError extends Error {}

/** Reads the whole result, judging rows as they come. */
async function readResult(sync: QuerySync, index: number, client: QueryClient, deps: QueryRunDeps): Promise<{ rows: QueryRow[]; rejected: RowRejection[]; read: number }> {
  const rows: QueryRow[] = [];
  const rejected: RowRejection[] = [];
  const seen = new Set<string>();
  let read = 0;
  const take = (raw: readonly unknown[]) => {
    if (read + raw.length > sync.max_rows) {
      throw new RowLimitError(`the result has more than ${sync.max_rows} rows (query_syncs.${index}.max_rows)`);
    }
    const judged = readRows(raw, sync, read, seen);
    rows.push(...judged.rows);
    rejected.push(...judged.rejected);
    read += raw.length;
  };
  const source = sync.source;
  if (source.type === "jql") {
    take(await client.jql(await deps.readScript(source.script_file), source.params));
    return { rows, rejected, read };
  }
  // Pages: repeat the identical parameters with session_id and page + 1 until a short page
  // (https://docs.mixpanel.com/reference/engage-query); bounded by max_rows.
  let page = await client.engageWherePage({ ...(source.where !== undefined ? { where: source.where } : {}), outputProperties: source.output_properties, page: 0 });
  take(engageRows(page));
  const maxPages = Math.ceil(sync.max_rows / Math.max(1, page.page_size)) + 1;
  for (let n = 1; n <= maxPages && page.results.length >= page.page_size && page.session_id !== undefined; n++) {
    page = await client.engageWherePage({
      ...(source.where !== undefined ? { where: source.where } : {}),
      outputProperties: source.output_properties,
      sessionId: page.session_id,
      page: page.page + 1,
    });
    take(engageRows(page));
  }
  return { rows, rejected, read };
}

export async function runQuerySync(sync: QuerySync, index: number, budget: QueryTickBudget, deps: QueryRunDeps, dryRun: boolean): Promise<QueryTickReport> {
  const runId = deps.newId();
  const startedAt = new Date(deps.now()).toISOString();
  const before = budget.remaining();
  const spent = () => before - budget.remaining();
  let result: Awaited<ReturnType<typeof readResult>>;
  try {
    result = await readResult(sync, index, await budget.queryClient(), deps);
  } catch (error) {
    if (error instanceof BudgetExhaustedError) {
      deps.log.info("query sync waits for Query API budget", { querySyncId: sync.id });
      return { ...empty, outcome: "waiting_for_budget", queries: spent(), detail: "the hour's Query API budget is spent; the sync stays due" };
    }
    const detail = error instanceof RowLimitError ? error.message : `query failed: ${describeError(error)}`;
    deps.log.error("query sync failed", { querySyncId: sync.id, error: detail });
    deps.metric("QuerySyncFailed", 1, sync.id);
    const report: QueryRunReport = { ...empty, run_id: runId, started_at: startedAt, finished_at: new Date(deps.now()).toISOString(), outcome: "failed", queries: spent(), detail };
    if (!dryRun) await deps.store.writeState(sync.id, { last_started_at: new Date(budget.startedAt).toISOString(), last_run: report });
    return report;
  }
  const previous = await deps.store.readHashes(sync.id);
  const plan = planRows(result.rows, sync.destination, previous, sync.send);
  if (dryRun) {
    return {
      ...empty,
      outcome: "dry_run",
      rows_read: result.read,
      unchanged: plan.unchanged,
      rejected: result.rejected.length,
      queries: spent(),
      would_send: { count: plan.send.length, rows: plan.send.slice(0, DRY_RUN_SAMPLE).map(({ row }) => ({ key: row.key, values: destinationValues(row, sync.destination) })) },
      would_reject: result.rejected.slice(0, DRY_RUN_SAMPLE).map(({ index: at, code, reason }) => ({ index: at, code, reason })),
    };
  }
  const outcomes = await deliverRows(sync, plan.send.map(({ row }) => row), runId, deps.delivery);
  const next = new Map(plan.carried);
  const refused: RowRejection[] = [...result.rejected];
  let sent = 0;
  let notDelivered = 0;
  let firstRetry: string | undefined;
  plan.send.forEach(({ row, hash }, at) => {
    const outcome = outcomes[at] ?? { status: "retry", reason: "no outcome" };
    if (outcome.status === "sent") {
      sent += 1;
      next.set(row.key, hash);
    } else if (outcome.status === "rejected") {
      refused.push({ index: -1, code: "destination_refused", reason: outcome.reason, payload: { key: row.key, values: row.values } });
    } else {
      notDelivered += 1;
      firstRetry ??= outcome.reason;
    }
  });
  if (refused.length > 0) await deps.storeRejected(sync, runId, refused);
  await deps.store.writeHashes(sync.id, next);
  const outcome: QueryRunOutcome = notDelivered > 0 ? "partial" : "delivered";
  const report: QueryRunReport = {
    run_id: runId,
    started_at: startedAt,
    finished_at: new Date(deps.now()).toISOString(),
    outcome,
    rows_read: result.read,
    sent,
    unchanged: plan.unchanged,
    rejected: refused.length,
    not_delivered: notDelivered,
    queries: spent(),
    ...(firstRetry !== undefined ? { detail: `${notDelivered} row(s) left for the next run: ${firstRetry}` } : {}),
  };
  await deps.store.writeState(sync.id, { last_started_at: new Date(budget.startedAt).toISOString(), last_run: report });
  deps.metric("QueryRowsRead", report.rows_read, sync.id);
  deps.metric("QueryRowsSent", report.sent, sync.id);
  deps.metric("QueryRowsUnchanged", report.unchanged, sync.id);
  deps.metric("QueryRowsRejected", report.rejected, sync.id);
  if (notDelivered > 0) deps.metric("QueryRowsNotDelivered", notDelivered, sync.id);
  deps.log.info("query sync run", { querySyncId: sync.id, ...report });
  return report;
}

/** Every query sync of the stage for one export tick. */
export async function runQuerySyncs(
  syncs: readonly QuerySync[],
  budget: QueryTickBudget,
  deps: QueryRunDeps,
  options: QueryTickOptions = {},
): Promise<Record<string, QueryTickReport>> {
  const reports: Record<string, QueryTickReport> = {};
  const forced = new Set(options.force ?? []);
  for (const [index, sync] of syncs.entries()) {
    const isForced = forced.has(sync.id);
    if (options.only && !isForced) continue;
    if (!sync.enabled && !isForced) {
      reports[sync.id] = { ...empty, outcome: "disabled" };
      continue;
    }
    const state = await deps.store.readState(sync.id);
    if (!isForced && !isQueryDue(sync, state, budget.startedAt, deps.tickMs)) {
      reports[sync.id] = { ...empty, outcome: "not_due" };
      continue;
    }
    reports[sync.id] = await runQuerySync(sync, index, budget, deps, isForced && options.dryRun === true);
  }
  return reports;
}
