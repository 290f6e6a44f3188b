import type { SyncState } from "./messages.js";
import type { CohortSync } from "../config/cohort-syncs.js";
import { type ExportDeps, type SyncReport, iso, markUnhealthy } from "./tick.js";

export interface GuardInput {
  /** Members in the last delivered snapshot. */
  readonly previous: number;
  /** Members this run would remove from the destination. */
  readonly removals: number;
  /** Members the Query API returned, and the total it announced (if any). */
  readonly exported: number;
  readonly total?: number;
  readonly maxRemoveFraction: number;
  /** The operator forced a full sync: the guard steps aside. */
  readonly operatorFull: boolean;
  /** The previous run was held for the same reason: this run confirms it. */
  readonly held: boolean;
}

export type GuardVerdict = { readonly send: true; readonly confirmed: boolean } | { readonly send: false; readonly reason: string };

/**
 * Mass-removal guard (pure). An empty or truncated Query API answer must never
 * wipe a destination: a run that would remove more than `max_remove_fraction`
 * of the last snapshot, or that removes anyone while the export came back
 * shorter than the total the Query API announced, is held until an operator
 * forces a full sync or the next run finds the same (confirms it).
 */
export function removalGuard(input: GuardInput): GuardVerdict {
  if (input.operatorFull) return { send: true, confirmed: false };
  const truncated = input.total !== undefined && input.exported < input.total && input.removals > 0;
  const massive = input.previous > 0 && input.removals > input.maxRemoveFraction * input.previous;
  if (!truncated && !massive) return { send: true, confirmed: false };
  if (input.held) return { send: true, confirmed: true };
  const reason = truncated
    ? `export truncated (${input.exported} of ${input.total ?? "?"} members returned) and ${input.removals} removal(s) pending`
    : `run would remove ${input.removals} of ${input.previous} members (> max_remove_fraction ${input.maxRemoveFraction})`;
  return { send: false, reason };
}

/**
 * The guard over a run's totals (every partition diffed), acted on: a hold drops
 * the run (snapshot kept, sync unhealthy, `CohortSyncHeld`) and returns false; a
 * send clears any hold and returns true.
 */
export async function guardRun(
  sync: CohortSync,
  state: SyncState,
  deps: ExportDeps,
  entry: SyncReport,
  totals: { readonly previous: number; readonly removals: number },
): Promise<boolean> {
  const run = state.export;
  if (!run) return false;
  const { previous, removals } = totals;
  const verdict = removalGuard({
    previous,
    removals,
    exported: run.staged_members,
    ...(run.total !== undefined ? { total: run.total } : {}),
    maxRemoveFraction: sync.max_remove_fraction,
    operatorFull: run.operator_full,
    held: state.removal_hold !== undefined,
  });
  if (!verdict.send) {
    state.removal_hold = { run_id: run.run_id, at: iso(deps.now()), removals, previous };
    markUnhealthy(
      sync,
      state,
      `mass-removal guard: ${verdict.reason}; held until a forced full sync (npm run cohorts:export -- --sync ${sync.id} --full) or the next run confirms it`,
      deps,
    );
    deps.metric("CohortSyncHeld", 1, sync.id);
    delete state.export;
    await deps.store.writeState(sync.id, state);
    entry.outcome = "held";
    entry.detail = state.unhealthy_reason;
    return false;
  }
  if (verdict.confirmed) {
    deps.log.warn("cohort export: mass removal confirmed by a second run, sending it", { syncId: sync.id, runId: run.run_id, removals, previous });
  }
  delete state.removal_hold;
  return true;
}
