import type { SyncState } from "./messages.js";
import { totalPages } from "./plan.js";
import { keys } from "./store.js";
import type { CohortSync } from "../config/cohort-syncs.js";
import { type ExportDeps, iso, markUnhealthy } from "./tick.js";

/**
 * The settle step: reads the delivery ledger of the run that is out and mutates
 * `state`.
 *
 *  - Every page delivered → the pending snapshot becomes the snapshot.
 *  - A `failed/` entry (a permanent refusal, or a page whose deliveries were
 *    exhausted, see lib/destinations/deliver.ts) → the run is failed at once:
 *    old snapshot kept, sync unhealthy; the next due run re-diffs against the
 *    last delivered snapshot with a new session id.
 *  - Still incomplete after `deliveryTimeoutMs` (a backstop when pages vanish
 *    without a ledger entry) → failed the same way.
 *  - Otherwise wait: a sync never has two runs out at once.
 */
export async function settleDelivery(
  sync: CohortSync,
  state: SyncState,
  deps: ExportDeps,
): Promise<"advanced" | "failed" | "waiting"> {
  const delivery = state.delivery;
  if (!delivery) return "advanced";
  const runPrefix = keys.run(sync.id, delivery.run_id);
  const failed = await deps.store.list(`${runPrefix}failed/`);
  if (failed.length > 0) {
    const first = failed[0] ? await deps.store.readFailure(failed[0]) : undefined;
    markUnhealthy(
      sync,
      state,
      `${failed.length} page(s) of run ${delivery.run_id} refused permanently${first ? `: ${first.error}` : ""}`,
      deps,
    );
    delete state.delivery;
    return "failed";
  }
  const delivered = await deps.store.list(`${runPrefix}delivered/`);
  if (delivered.length >= totalPages(delivery.expected)) {
    await promote(sync, state, deps);
    return "advanced";
  }
  if (deps.now() - Date.parse(delivery.enqueued_at) > deps.limits.deliveryTimeoutMs) {
    markUnhealthy(
      sync,
      state,
      `run ${delivery.run_id}: only ${delivered.length}/${totalPages(delivery.expected)} pages delivered before the timeout`,
      deps,
    );
    delete state.delivery;
    return "failed";
  }
  return "waiting";
}

export async function promote(sync: CohortSync, state: SyncState, deps: ExportDeps): Promise<void> {
  const delivery = state.delivery;
  if (!delivery) return;
  const parts = delivery.partitions ?? 1;
  if (parts > 1) {
    for (let part = 0; part < parts; part++) {
      await deps.store.copy(keys.pendingSnapshotPart(sync.id, delivery.run_id, part, parts), keys.snapshotPart(sync.id, part, parts));
    }
  } else {
    await deps.store.copy(keys.pendingSnapshot(sync.id, delivery.run_id), keys.snapshot(sync.id));
  }
  const now = iso(deps.now());
  state.snapshot = { run_id: delivery.run_id, created_at: now, count: delivery.count, ...(parts > 1 ? { partitions: parts } : {}) };
  if (delivery.full) state.last_full_at = now;
  state.healthy = true;
  delete state.unhealthy_reason;
  delete state.delivery;
  deps.metric("CohortSyncAdvanced", 1, sync.id);
  deps.log.info("cohort export: snapshot advanced", { syncId: sync.id, runId: delivery.run_id, count: delivery.count });
}
