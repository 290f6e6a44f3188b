import { RetryableError, describeError } from "../util/errors.js";
import { BudgetExhaustedError, type CohortInfo } from "../mixpanel/query.js";
import type { SyncState } from "./messages.js";
import { type CohortSync, ONCE, rateToMs } from "../config/cohort-syncs.js";
import { DEFAULT_TICK_MS, type TickContext, iso, markUnhealthy } from "./tick.js";

/**
 * Schedule policy (pure parts first).
 *
 * Due-ness is measured between **tick start** times: a run that starts is
 * stamped with the time its tick started (not a stamp taken after the list
 * call), and a sync is due once its interval has passed minus half a tick. The
 * EventBridge tick fires on time give or take a little, so `rate(30 minutes)`
 * under a 15-minute tick runs every second tick (30 min) and `rate(1 minute)`
 * under a 1-minute tick runs every tick, instead of 45 min and ~70 s.
 * `"schedule": "once"` runs one full export and then stays idle until forced.
 */
export function isDue(sync: CohortSync, state: SyncState, tickStartMs: number, tickMs = DEFAULT_TICK_MS): boolean {
  if (!state.last_started_at) return true;
  if (sync.schedule === ONCE) return false;
  const interval = rateToMs(sync.schedule) ?? 1_800_000;
  return tickStartMs - Date.parse(state.last_started_at) >= interval - tickMs / 2;
}

/** Whether a new run must be a full `members` sync (pure). */
export function needsFullSync(sync: CohortSync, state: SyncState, nowMs: number, forced: boolean): boolean {
  if (forced || sync.mode === "full" || sync.schedule === ONCE || !state.snapshot) return true;
  const window = rateToMs(sync.resync_window) ?? 3 * 86_400_000;
  if (nowMs - Date.parse(state.snapshot.created_at) > window) return true;
  if (sync.full_resync_every) {
    const every = rateToMs(sync.full_resync_every) ?? Number.POSITIVE_INFINITY;
    if (!state.last_full_at || nowMs - Date.parse(state.last_full_at) >= every) return true;
  }
  return false;
}

/**
 * Starts the runs of `starting`: one /cohorts/list call per tick for the names
 * and descriptions (and to learn that a cohort is gone before spending an
 * /engage call on it). Returns the syncs whose run started.
 */
export async function startRuns(tick: TickContext, starting: readonly CohortSync[]): Promise<CohortSync[]> {
  const { deps, states, report } = tick;
  const { store, log } = deps;
  if (starting.length === 0) return [];
  let cohorts: CohortInfo[] | undefined;
  try {
    cohorts = await (await tick.queryClient()).listCohorts();
  } catch (error) {
    if (!(error instanceof BudgetExhaustedError || error instanceof RetryableError)) throw error;
    log.warn("cohort export: /cohorts/list unavailable, new runs wait for the next tick", { error: describeError(error) });
  }
  await tick.persistBudget();
  if (!cohorts) return [];
  const started: CohortSync[] = [];
  /** Fan-out: the first lane of a sync that starts this tick queries; its siblings share that export. */
  const leaders = new Map<string, { sync: string; run_id: string }>();
  for (const sync of starting) {
    const state = states.get(sync.id);
    const entry = report[sync.id];
    if (!state || !entry) continue;
    const cohort = cohorts.find((c) => c.id === sync.cohort_id);
    if (!cohort) {
      // Deleted (or not visible to the service account): no /engage call is spent on it;
      // the next due run looks again and resumes normally once it is back.
      markUnhealthy(sync, state, `cohort ${sync.cohort_id} not found in /cohorts/list`, deps);
      state.last_started_at = iso(tick.startedAt);
      await store.writeState(sync.id, state);
      entry.outcome = "failed";
      entry.detail = state.unhealthy_reason;
      continue;
    }
    const forced = tick.isForced(sync);
    const operatorFull = forced && tick.options.full === true;
    const full = needsFullSync(sync, state, tick.startedAt, operatorFull);
    state.last_started_at = iso(tick.startedAt);
    const runId = deps.newId();
    const leader = leaders.get(sync.group);
    if (!leader) leaders.set(sync.group, { sync: sync.id, run_id: runId });
    state.export = {
      run_id: runId,
      ...(leader ? { shared_from: leader } : {}),
      started_at: iso(deps.now()),
      full,
      operator_full: operatorFull,
      cohort: { id: cohort.id, name: cohort.name, description: cohort.description ?? "" },
      project_id: deps.projectId,
      phase: "fetch",
      next_page: 0,
      staged_pages: 0,
      staged_members: 0,
      emitted_pages: 0,
    };
    await store.writeState(sync.id, state);
    log.info("cohort export: run started", { syncId: sync.id, runId: state.export.run_id, full, forced, sharedFrom: leader?.sync });
    started.push(sync);
  }
  return started;
}
