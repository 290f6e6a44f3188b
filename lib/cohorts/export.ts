import { describeError } from "../util/errors.js";
import type { SyncState } from "./messages.js";
import { emitRuns } from "./emit.js";
import { openTickBudget } from "./budget.js";
import { fetchPages, joinSharedExports } from "./fetch-pages.js";
import { isDue, startRuns } from "./schedule.js";
import { settleDelivery } from "./settle.js";
import { checkBrazeArrays } from "./braze-arrays.js";
import { runQuerySyncs } from "../queries/run.js";
import type { CohortSync } from "../config/cohort-syncs.js";
import type { ExportDeps, ExportOptions, ExportReport, SyncReport, TickContext } from "./tick.js";

export { isDue, needsFullSync } from "./schedule.js";
export { removalGuard } from "./removal-guard.js";
export type { ExportDeps, ExportLog, ExportOptions, ExportReport, SyncOutcome, SyncReport } from "./tick.js";

/**
 * One tick of the scheduled cohort export. For every enabled (or forced) sync:
 *
 *  1. settle (settle.ts): read the ledger of the run that is out;
 *  2. schedule (schedule.ts): start a run when due or forced, after one
 *     /cohorts/list call for the tick;
 *  3. fetch (fetch-pages.ts): /engage pages within the Query API budget (budget.ts);
 *  4. emit (emit.ts): diff, mass-removal guard (removal-guard.ts), pages to the
 *     deliveries queue (page-layout.ts); an export over `partitionMembers` is
 *     emitted partition by partition across invocations.
 */
export async function runCohortExport(
  syncs: readonly CohortSync[],
  deps: ExportDeps,
  options: ExportOptions = {},
): Promise<ExportReport> {
  // A stage with nothing to sync opens no budget: no store read or write, no Query API call.
  if (syncs.length === 0 && (deps.querySyncs?.syncs.length ?? 0) === 0) return { queries: 0, budgetLeft: 0, syncs: {} };
  const startedAt = deps.now();
  const tickBudget = await openTickBudget(deps, startedAt);
  const forced = new Set(options.force ?? []);
  const tick: TickContext = {
    syncs,
    deps,
    options,
    startedAt,
    forced,
    isForced: (sync) => forced.has(sync.id) || forced.has(sync.group),
    states: new Map<string, SyncState>(),
    report: {},
    budget: tickBudget.budget,
    queryClient: tickBudget.queryClient,
    persistBudget: tickBudget.persist,
  };
  try {
    if (!options.querySyncs?.only) await runTick(tick, syncs);
    const queries = deps.querySyncs
      ? await runQuerySyncs(deps.querySyncs.syncs, { queryClient: tickBudget.queryClient, remaining: () => tickBudget.budget.remaining(), startedAt }, deps.querySyncs.deps, options.querySyncs)
      : undefined;
    await tickBudget.persist();
    return { queries: tickBudget.spent(), budgetLeft: tickBudget.budget.remaining(), syncs: tick.report, ...(queries ? { querySyncs: queries } : {}) };
  } catch (error) {
    try {
      await tickBudget.persist();
    } catch (persistError) {
      deps.log.error("cohort export: could not record spent Query API calls", { error: describeError(persistError) });
    }
    throw error;
  }
}

async function runTick(tick: TickContext, syncs: readonly CohortSync[]): Promise<void> {
  const { deps, states, report } = tick;
  const starting: CohortSync[] = [];
  const active: CohortSync[] = [];
  for (const sync of syncs) {
    const entry: SyncReport = { outcome: "not_due", pagesFetched: 0, pagesEnqueued: 0 };
    report[sync.id] = entry;
    // A disabled sync still runs when forced (a manual one-time export).
    const included = tick.options.include?.some((id) => id === sync.id || id === sync.group) ?? false;
    if (!sync.enabled && !tick.isForced(sync) && !included) {
      entry.outcome = "disabled";
      continue;
    }
    const state = await deps.store.readState(sync.id);
    states.set(sync.id, state);
    if (state.delivery) {
      const settled = await settleDelivery(sync, state, deps);
      if (settled === "waiting") {
        entry.outcome = "waiting_for_delivery";
        continue;
      }
      entry.outcome = settled === "advanced" ? "advanced" : "failed";
      await deps.store.writeState(sync.id, state);
    }
    if (state.export) {
      active.push(sync);
      continue;
    }
    if (tick.isForced(sync) || isDue(sync, state, tick.startedAt, deps.limits.tickMs)) starting.push(sync);
  }
  active.push(...(await startRuns(tick, starting)));
  await fetchPages(tick, active);
  await joinSharedExports(tick, active);
  await emitRuns(tick, active);
  await checkBrazeArrays(tick.syncs, states, report, deps);
}
