import { RetryableError, describeError } from "../util/errors.js";
import { BudgetExhaustedError, type QueryClient, isSessionError } from "../mixpanel/query.js";
import type { ExportState, PageMember, SyncState } from "./messages.js";
import { type CohortSync, outputPropertiesFor } from "../config/cohort-syncs.js";
import { type TickContext, iso, markUnhealthy } from "./tick.js";

/**
 * The fetch step: /engage pages round-robin across the syncs with a run in the
 * fetch phase (one page per sync per round, longest-waiting first), within the
 * tick's Query API budget and time. Each page is staged in S3 and the checkpoint
 * written, so a run spans invocations.
 *
 *  - 429/5xx after retries or budget spent → stop fetching; resume next tick.
 *  - Session expired, or a different session id → restart from page 0.
 *  - Any other refusal (the cohort was deleted mid-export: the Query API answers
 *    400 for an unknown cohort) → the run is **aborted**: no more pages are
 *    requested for it, the sync is unhealthy, and the next due run starts with
 *    the /cohorts/list check (schedule.ts), which spends no /engage call on a
 *    cohort that is still gone and resumes normally once it is back.
 */
export async function fetchPages(tick: TickContext, active: readonly CohortSync[]): Promise<void> {
  const { deps, states, report } = tick;
  const { limits, log } = deps;
  const fetchQueue = active
    .filter((sync) => states.get(sync.id)?.export?.phase === "fetch" && !states.get(sync.id)?.export?.shared_from)
    .sort((a, b) => lastFetch(states.get(a.id)) - lastFetch(states.get(b.id)));
  let stopFetching = false;
  while (fetchQueue.length > 0 && !stopFetching) {
    if (tick.budget.remaining() <= 0 || deps.remainingMs() < limits.fetchMarginMs) break;
    const round = fetchQueue.splice(0, Math.max(1, limits.concurrency));
    const results = await Promise.all(
      round.map(async (sync) => {
        try {
          return await fetchOnePage(tick, sync, await tick.queryClient());
        } catch (error) {
          if (error instanceof BudgetExhaustedError || error instanceof RetryableError) {
            log.warn("cohort export: Query API unavailable, checkpointed", { syncId: sync.id, error: describeError(error) });
            stopFetching = true;
            return "stop" as const;
          }
          await abortRun(tick, sync, `export of cohort ${sync.cohort_id} refused by the Query API, run aborted: ${describeError(error)}`);
          return "aborted" as const;
        }
      }),
    );
    await tick.persistBudget();
    results.forEach((result, index) => {
      const sync = round[index];
      if (sync && result === "more") fetchQueue.push(sync);
    });
  }
  for (const sync of active) {
    const entry = report[sync.id];
    if (entry && entry.outcome !== "failed" && states.get(sync.id)?.export?.phase === "fetch") entry.outcome = "fetching";
  }
}

/**
 * Fan-out: a lane sharing another lane's export moves to emit once that export
 * is complete (same tick, before either emits), taking over its staged-page
 * counts; if the leading run was aborted, so is the lane.
 */
export async function joinSharedExports(tick: TickContext, active: readonly CohortSync[]): Promise<void> {
  for (const sync of active) {
    const state = tick.states.get(sync.id);
    const run = state?.export;
    if (!state || !run?.shared_from || run.phase !== "fetch") continue;
    const leaderRun = tick.states.get(run.shared_from.sync)?.export;
    if (leaderRun?.run_id === run.shared_from.run_id) {
      if (leaderRun.phase !== "emit") continue; // still fetching
      run.staged_pages = leaderRun.staged_pages;
      run.staged_members = leaderRun.staged_members;
      if (leaderRun.total !== undefined) run.total = leaderRun.total;
      run.phase = "emit";
      await tick.deps.store.writeState(sync.id, state);
      continue;
    }
    await abortRun(tick, sync, `the shared export of run ${run.shared_from.run_id} (lane ${run.shared_from.sync}) was aborted; the next run queries again`);
  }
}

/** Drops the run (its staged pages expire with the run prefix), keeps the last snapshot, marks the sync unhealthy. */
export async function abortRun(tick: TickContext, sync: CohortSync, reason: string): Promise<void> {
  const state = tick.states.get(sync.id);
  if (!state) return;
  markUnhealthy(sync, state, reason, tick.deps);
  delete state.export;
  await tick.deps.store.writeState(sync.id, state);
  const entry = tick.report[sync.id];
  if (entry) {
    entry.outcome = "failed";
    entry.detail = reason;
  }
}

function lastFetch(state: SyncState | undefined): number {
  const at = state?.export?.last_fetch_at;
  return at ? Date.parse(at) : 0;
}

async function fetchOnePage(tick: TickContext, sync: CohortSync, client: QueryClient): Promise<"more" | "done"> {
  const { deps } = tick;
  const state = tick.states.get(sync.id);
  const run = state?.export;
  if (!state || !run) return "done";
  const entry = tick.report[sync.id];
  let page;
  try {
    page = await client.engagePage({
      cohortId: sync.cohort_id,
      outputProperties: outputPropertiesFor(sync, tick.syncs),
      includeAllUsers: sync.include_all_users,
      ...(run.session_id !== undefined ? { sessionId: run.session_id } : {}),
      page: run.next_page,
    });
  } catch (error) {
    if (run.session_id !== undefined && isSessionError(error)) {
      deps.log.warn("cohort export: session expired, restarting from page 0", { syncId: sync.id });
      restartExport(run);
      await deps.store.writeState(sync.id, state);
      return "more";
    }
    throw error;
  }
  if (run.session_id !== undefined && page.session_id !== undefined && page.session_id !== run.session_id) {
    // A different session means Mixpanel restarted the export; so do we.
    restartExport(run);
    await deps.store.writeState(sync.id, state);
    return "more";
  }
  const members: PageMember[] = page.results.map((r) => ({ id: r.$distinct_id, props: r.$properties }));
  await deps.store.putStaged(sync.id, run.run_id, run.staged_pages, { members });
  run.staged_pages += 1;
  run.staged_members += members.length;
  run.session_id = page.session_id ?? run.session_id;
  if (page.total !== undefined) run.total = page.total;
  run.next_page = page.page + 1;
  run.last_fetch_at = iso(deps.now());
  const finished =
    page.results.length < page.page_size || (run.total !== undefined && run.staged_members >= run.total);
  if (finished) run.phase = "emit";
  await deps.store.writeState(sync.id, state);
  if (entry) entry.pagesFetched += 1;
  return finished ? "done" : "more";
}

function restartExport(run: ExportState): void {
  delete run.session_id;
  delete run.total;
  run.next_page = 0;
  run.staged_pages = 0;
  run.staged_members = 0;
}
