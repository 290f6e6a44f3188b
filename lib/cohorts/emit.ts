import type { DeliveryMessage, DeliveryPage, ExportState, PageMember, SyncAction, SyncState } from "./messages.js";
import { chunk, planPages, totalPages } from "./plan.js";
import { isPartitionedRun, readPrevious } from "./partition-layout.js";
import { type DiffResult, diffStaged } from "./diff.js";
import { PROP_HASH_DEFAULT } from "./hash.js";
import { type MemberColumns, emptyColumns } from "./member-columns.js";
import { encodeSnapshot } from "./snapshot-codec.js";
import { lineMember } from "./staged-line-reader.js";
import { StagedRows } from "./staged-rows.js";
import { type CohortStore, keys } from "./store.js";
import { type CohortSync, identityProperties } from "../config/cohort-syncs.js";
import { promote } from "./settle.js";
import { type ExportDeps, type SyncReport, type TickContext, iso, markUnhealthy } from "./tick.js";

/**
 * The emit step: diff the staged export against the last delivered snapshot,
 * apply the mass-removal guard, write the pending snapshot and the delivery
 * pages, enqueue one SQS message per page.
 */
export async function emitRuns(tick: TickContext, active: readonly CohortSync[]): Promise<void> {
  const { deps, states, report } = tick;
  for (const sync of active) {
    const state = states.get(sync.id);
    const entry = report[sync.id];
    if (!state?.export || state.export.phase !== "emit" || !entry) continue;
    if (isPartitionedRun(state.export, state, deps.limits)) continue; // emit-partitioned.ts
    if (deps.remainingMs() < deps.limits.emitMarginMs) {
      entry.outcome = "fetching";
      entry.detail = "emit deferred to the next tick (time)";
      continue;
    }
    await emitRun(sync, state, deps, entry);
  }
}

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
 * Acts on the guard's verdict: a hold drops the run (snapshot kept, sync
 * unhealthy, `CohortSyncHeld`) and returns false; a send clears any hold.
 */
export async function applyGuardVerdict(
  verdict: GuardVerdict,
  sync: CohortSync,
  state: SyncState,
  deps: ExportDeps,
  entry: SyncReport,
  removals: number,
  previous: number,
): Promise<boolean> {
  const run = state.export;
  if (!run) return false;
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

/** Where a run's staged pages are: its own run, or the fan-out lane whose export it shares. */
export function stagedSource(sync: CohortSync, run: ExportState): { sync: string; run: string } {
  return run.shared_from ? { sync: run.shared_from.sync, run: run.shared_from.run_id } : { sync: sync.id, run: run.run_id };
}

/** This run's staged members as stored lines (staged-rows.ts), in staging order. */
async function readStaged(sync: CohortSync, run: ExportState, store: CohortStore): Promise<StagedRows> {
  const rows = new StagedRows();
  const source = stagedSource(sync, run);
  for (let n = 0; n < run.staged_pages; n++) await store.getStagedRows(source.sync, source.run, n, rows);
  return rows;
}

export function parseIdentity(identity: string): Record<string, unknown> {
  if (identity === "") return {};
  try {
    const value: unknown = JSON.parse(identity);
    if (value !== null && typeof value === "object" && !Array.isArray(value)) return { ...value };
  } catch {
    // fall through
  }
  return {};
}

/**
 * The key a destination finds a member by, when it is not the distinct id:
 * Brevo the email, Braze the external id property. undefined = keyed by id.
 */
export function destinationKey(sync: CohortSync, props: Record<string, unknown>): string | undefined {
  const destination = sync.destination;
  switch (destination.type) {
    case "webhook":
      return undefined;
    case "brevo": {
      const email = props[destination.email_property];
      return typeof email === "string" ? email.trim().toLowerCase() : undefined;
    }
    case "braze": {
      if (!destination.external_id_property) return undefined;
      const id = props[destination.external_id_property];
      return id === undefined || id === null ? undefined : String(id);
    }
    default: {
      const unhandled: never = destination;
      throw new Error(`unhandled destination ${JSON.stringify(unhandled)}`);
    }
  }
}

/**
 * Members still in the cohort whose destination key changed (a new email for
 * Brevo): the old key must be removed too, or the old contact stays on the list.
 * Returns snapshot rows (previous identities) to add to the removals.
 */
export function movedRows(
  sync: CohortSync,
  current: MemberColumns,
  previous: MemberColumns,
  diff: Pick<DiffResult, "send" | "previousRow">,
): number[] {
  if (sync.destination.type === "webhook" || previous.ids.length === 0) return [];
  const moved: number[] = [];
  for (let row = 0; row < current.ids.length; row++) {
    if (diff.send[row] !== 1) continue;
    const j = diff.previousRow[row] ?? -1;
    if (j < 0 || previous.identities[j] === current.identities[row]) continue;
    const before = destinationKey(sync, parseIdentity(previous.identities[j] ?? ""));
    const after = destinationKey(sync, parseIdentity(current.identities[row] ?? ""));
    if (before !== undefined && before !== "" && before !== after) moved.push(j);
  }
  return moved;
}

async function emitRun(sync: CohortSync, state: SyncState, deps: ExportDeps, entry: SyncReport): Promise<void> {
  const run = state.export;
  if (!run) return;
  const { store } = deps;
  // A partitioned snapshot read whole: its partitions in order are in member-key order.
  const stored = await readPrevious(store, sync.id, state.snapshot, 0, 1);
  const previous = stored ?? emptyColumns();
  // A full run with a lost snapshot object is still a full run; a diff run without one must become full.
  const full = run.full || stored === undefined;
  const propHash = full ? PROP_HASH_DEFAULT : (previous.propHash ?? "sha1-48");
  const wanted = identityProperties(sync.destination);
  const staged = await readStaged(sync, run, store);
  const { current, diff } = diffStaged(staged, previous, full, propHash, wanted);

  if (run.emitted_pages === 0) {
    const verdict = removalGuard({
      previous: previous.ids.length,
      removals: diff.removedRows.length,
      exported: run.staged_members,
      ...(run.total !== undefined ? { total: run.total } : {}),
      maxRemoveFraction: sync.max_remove_fraction,
      operatorFull: run.operator_full,
      held: state.removal_hold !== undefined,
    });
    if (!(await applyGuardVerdict(verdict, sync, state, deps, entry, diff.removedRows.length, previous.ids.length))) return;
  }

  const removedRows = [...diff.removedRows, ...movedRows(sync, current, previous, diff)];
  const plan = planPages(sync.destination, full, diff.sendCount, removedRows.length);
  const pendingKey = keys.pendingSnapshot(sync.id, run.run_id);
  if (run.emitted_pages === 0 || !(await store.exists(pendingKey))) {
    const snapshot = await encodeSnapshot(
      { v: 2, sync_id: sync.id, cohort_id: sync.cohort_id, run_id: run.run_id, created_at: iso(deps.now()), count: 0, prop_hash: propHash, identity_keys: wanted },
      current,
      diff.nextSnapshotRows,
      { ids: previous.ids, previousRow: diff.previousRow, ...(previous.plainIds ? { plainIds: true } : {}) },
    );
    await store.putBytes(pendingKey, snapshot);
  }

  const base = {
    v: 1 as const,
    sync_id: sync.id,
    run_id: run.run_id,
    project_id: run.project_id || deps.projectId,
    cohort: run.cohort,
  };
  let ordinal = 0;
  let batch: DeliveryMessage[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    await deps.enqueue(batch);
    run.emitted_pages += batch.length;
    entry.pagesEnqueued += batch.length;
    batch = [];
    await store.writeState(sync.id, state);
  };
  const emit = async (action: SyncAction, page: number, totalPagesOfAction: number, members: PageMember[]) => {
    ordinal += 1;
    if (ordinal <= run.emitted_pages) return; // enqueued by an interrupted attempt
    const key = keys.page(sync.id, run.run_id, action, page);
    const body: DeliveryPage = { ...base, action, page, total_pages: totalPagesOfAction, members };
    await store.putPage(key, body);
    batch.push({ v: 1, sync_id: sync.id, run_id: run.run_id, action, page, total_pages: totalPagesOfAction, key });
    if (batch.length === 10) await flush();
  };

  // Primary pages (members / add_members), in staging order; only these members' properties are parsed.
  const primaryPages = plan.expected[plan.primary];
  if (primaryPages > 0) {
    let page = 0;
    let pending: PageMember[] = [];
    for (let row = 0; row < staged.count; row++) {
      if (diff.send[row] === 1) pending.push(lineMember(staged.ids[row] ?? "", staged.line(row)));
      if (pending.length === 1000) {
        await emit(plan.primary, ++page, primaryPages, pending);
        pending = [];
      }
    }
    if (pending.length > 0 || page === 0) await emit(plan.primary, ++page, primaryPages, pending);
  }
  // Removals carry the identity kept in the snapshot (the profile is gone from the export).
  const removePages = plan.expected.remove_members;
  if (removePages > 0) {
    const removed = removedRows.map(
      (j): PageMember => ({ id: previous.ids[j] ?? "", props: parseIdentity(previous.identities[j] ?? "") }),
    );
    let page = 0;
    for (const members of chunk(removed)) await emit("remove_members", ++page, removePages, members);
    if (page === 0) await emit("remove_members", 1, 1, []);
  }
  await flush();

  const now = iso(deps.now());
  state.delivery = {
    run_id: run.run_id,
    full,
    enqueued_at: now,
    expected: plan.expected,
    count: diff.nextSnapshotRows.length,
  };
  delete state.export;
  entry.outcome = "enqueued";
  entry.detail = `${plan.expected.members} members, ${plan.expected.add_members} add, ${plan.expected.remove_members} remove pages`;
  deps.log.info("cohort export: pages enqueued", { syncId: sync.id, runId: run.run_id, ...plan.expected });
  if (totalPages(plan.expected) === 0) {
    // Nothing to deliver (Brevo/Braze with no change): the snapshot advances now.
    await promote(sync, state, deps);
    entry.outcome = "advanced";
  }
  await store.writeState(sync.id, state);
}
