import { RetryableError, describeError } from "../errors.js";
import {
  BudgetExhaustedError,
  type CohortInfo,
  type QueryBudget,
  type QueryClient,
  createQueryBudget,
  isSessionError,
} from "../mixpanel/query.js";
import {
  type DeliveryMessage,
  type DeliveryPage,
  type ExportState,
  type PageMember,
  type SyncAction,
  type SyncState,
} from "./messages.js";
import { chunk, planPages, totalPages } from "./plan.js";
import {
  type MemberColumns,
  decodeSnapshot,
  diffMembers,
  emptyColumns,
  encodeSnapshot,
  identityOf,
  propertyHash,
} from "./snapshot.js";
import { type CohortStore, keys } from "./store.js";
import { type CohortSync, outputPropertiesFor, rateToMs } from "./sync-config.js";

/**
 * One tick of the scheduled cohort export. For every enabled sync:
 *
 *  1. settle: if the previous run's pages are out, read the delivery ledger.
 *     All delivered → promote the pending snapshot. A permanent failure or a
 *     ledger still incomplete after `deliveryTimeoutMs` → keep the old snapshot
 *     (the next diff re-sends whatever failed) and mark the sync unhealthy.
 *     Still in flight → wait; a sync never has two runs out at once.
 *  2. start a run when the schedule is due (full when mode=full, no snapshot,
 *     snapshot older than resync_window, full_resync_every due, or forced).
 *  3. fetch /engage pages round-robin across syncs (one page per sync per round,
 *     longest-waiting first), within the run's Query API budget; each page is
 *     staged in S3 and the checkpoint written, so a run spans invocations.
 *  4. emit: diff against the snapshot, write the pending snapshot and the
 *     delivery pages, enqueue one SQS message per page.
 */

export interface ExportLog {
  info(message: string, extra?: Record<string, unknown>): void;
  warn(message: string, extra?: Record<string, unknown>): void;
  error(message: string, extra?: Record<string, unknown>): void;
}

export interface ExportDeps {
  readonly store: CohortStore;
  readonly createQueryClient: (budget: QueryBudget) => Promise<QueryClient>;
  readonly enqueue: (messages: DeliveryMessage[]) => Promise<void>;
  readonly projectId: string;
  readonly now: () => number;
  readonly newId: () => string;
  /** Lambda remaining time (context.getRemainingTimeInMillis). */
  readonly remainingMs: () => number;
  readonly limits: {
    /** Query API calls per rolling hour this relay may use (Mixpanel: 60 per project). */
    readonly queriesPerHour: number;
    /** Cap per invocation, so one tick never spends the whole hour. */
    readonly queriesPerRun: number;
    /** Calls in flight (Mixpanel: 5 concurrent per project). */
    readonly concurrency: number;
    /** A run whose ledger is still incomplete after this is given up (old snapshot kept). */
    readonly deliveryTimeoutMs: number;
    /** Stop fetching when less time than this is left. */
    readonly fetchMarginMs: number;
    /** Do not start an emit with less time than this left. */
    readonly emitMarginMs: number;
  };
  readonly log: ExportLog;
  readonly metric: (name: string, value: number, syncId: string) => void;
}

export interface ExportOptions {
  /** Run these syncs now even when not due (manual trigger). */
  readonly force?: readonly string[];
  /** Forced runs are full `members` syncs (the "force full resync" lever). */
  readonly full?: boolean;
}

export type SyncOutcome =
  | "disabled"
  | "not_due"
  | "waiting_for_delivery"
  | "fetching"
  | "enqueued"
  | "advanced"
  | "failed";

export interface SyncReport {
  outcome: SyncOutcome;
  pagesFetched: number;
  pagesEnqueued: number;
  detail?: string;
}

export interface ExportReport {
  readonly queries: number;
  readonly budgetLeft: number;
  readonly syncs: Record<string, SyncReport>;
}

const HOUR_MS = 3_600_000;

const iso = (ms: number) => new Date(ms).toISOString();

/** Whether the schedule says a new run starts now (pure). */
export function isDue(sync: CohortSync, state: SyncState, nowMs: number): boolean {
  if (!state.last_started_at) return true;
  const interval = rateToMs(sync.schedule) ?? 1_800_000;
  return nowMs - Date.parse(state.last_started_at) >= interval;
}

/** Whether a new run must be a full `members` sync (pure). */
export function needsFullSync(sync: CohortSync, state: SyncState, nowMs: number, forced: boolean): boolean {
  if (forced || sync.mode === "full" || !state.snapshot) return true;
  const window = rateToMs(sync.resync_window) ?? 3 * 86_400_000;
  if (nowMs - Date.parse(state.snapshot.created_at) > window) return true;
  if (sync.full_resync_every) {
    const every = rateToMs(sync.full_resync_every) ?? Number.POSITIVE_INFINITY;
    if (!state.last_full_at || nowMs - Date.parse(state.last_full_at) >= every) return true;
  }
  return false;
}

function identityKeys(sync: CohortSync): string[] {
  const keysWanted = ["$email"];
  if (sync.destination.type === "braze" && sync.destination.external_id_property) {
    keysWanted.push(sync.destination.external_id_property);
  }
  return keysWanted;
}

export async function runCohortExport(
  syncs: readonly CohortSync[],
  deps: ExportDeps,
  options: ExportOptions = {},
): Promise<ExportReport> {
  const { store, limits, log } = deps;
  const states = new Map<string, SyncState>();
  const forced = new Set(options.force ?? []);

  // Rolling-hour budget shared by every sync of this run.
  const nowAtStart = deps.now();
  const recentCalls = (await store.readBudget()).filter((t) => nowAtStart - t < HOUR_MS);
  const allowance = Math.max(0, Math.min(limits.queriesPerRun, limits.queriesPerHour - recentCalls.length));
  const budget = createQueryBudget(allowance, limits.concurrency);
  let client: QueryClient | undefined;
  const queryClient = async () => (client ??= await deps.createQueryClient(budget));

  // Spent calls are written to _budget.json as soon as they are spent (after the
  // list call and after every fetch round), and once more on the way out when the
  // tick throws: an emit error or a Lambda timeout must not make the next tick
  // believe the hour's calls are still there.
  const spentAt: number[] = [];
  const persistBudget = async () => {
    const used = allowance - budget.remaining();
    if (used <= spentAt.length) return;
    const stamp = deps.now();
    while (spentAt.length < used) spentAt.push(stamp);
    await store.writeBudget([...recentCalls, ...spentAt]);
  };
  try {
    const report = await exportTick(syncs, deps, options, states, forced, budget, queryClient, persistBudget);
    await persistBudget();
    return { queries: allowance - budget.remaining(), budgetLeft: budget.remaining(), syncs: report };
  } catch (error) {
    try {
      await persistBudget();
    } catch (persistError) {
      log.error("cohort export: could not record spent Query API calls", { error: describeError(persistError) });
    }
    throw error;
  }
}

async function exportTick(
  syncs: readonly CohortSync[],
  deps: ExportDeps,
  options: ExportOptions,
  states: Map<string, SyncState>,
  forced: ReadonlySet<string>,
  budget: QueryBudget,
  queryClient: () => Promise<QueryClient>,
  persistBudget: () => Promise<void>,
): Promise<Record<string, SyncReport>> {
  const { store, limits, log } = deps;
  const report: Record<string, SyncReport> = {};

  // 1 + 2: settle previous deliveries, decide what runs.
  const starting: CohortSync[] = [];
  const active: CohortSync[] = [];
  for (const sync of syncs) {
    const entry: SyncReport = { outcome: "not_due", pagesFetched: 0, pagesEnqueued: 0 };
    report[sync.id] = entry;
    if (!sync.enabled) {
      entry.outcome = "disabled";
      continue;
    }
    const state = await store.readState(sync.id);
    states.set(sync.id, state);
    if (state.delivery) {
      const settled = await settleDelivery(sync, state, deps);
      if (settled === "waiting") {
        entry.outcome = "waiting_for_delivery";
        continue;
      }
      entry.outcome = settled === "advanced" ? "advanced" : "failed";
      await store.writeState(sync.id, state);
    }
    if (state.export) {
      active.push(sync);
      continue;
    }
    if (forced.has(sync.id) || isDue(sync, state, deps.now())) starting.push(sync);
  }

  // Cohort names/descriptions for new runs: one /cohorts/list call per tick.
  if (starting.length > 0) {
    let cohorts: CohortInfo[] | undefined;
    try {
      cohorts = await (await queryClient()).listCohorts();
    } catch (error) {
      if (!(error instanceof BudgetExhaustedError || error instanceof RetryableError)) throw error;
      log.warn("cohort export: /cohorts/list unavailable, new runs wait for the next tick", { error: describeError(error) });
    }
    await persistBudget();
    for (const sync of cohorts ? starting : []) {
      const state = states.get(sync.id);
      const entry = report[sync.id];
      if (!state || !entry) continue;
      const cohort = cohorts?.find((c) => c.id === sync.cohort_id);
      if (!cohort) {
        markUnhealthy(sync, state, `cohort ${sync.cohort_id} not found in /cohorts/list`, deps);
        state.last_started_at = iso(deps.now());
        await store.writeState(sync.id, state);
        entry.outcome = "failed";
        entry.detail = state.unhealthy_reason;
        continue;
      }
      const now = deps.now();
      const full = needsFullSync(sync, state, now, forced.has(sync.id) && options.full === true);
      state.last_started_at = iso(now);
      state.export = {
        run_id: deps.newId(),
        started_at: iso(now),
        full,
        cohort: { id: cohort.id, name: cohort.name, description: cohort.description ?? "" },
        project_id: deps.projectId,
        phase: "fetch",
        next_page: 0,
        staged_pages: 0,
        staged_members: 0,
        emitted_pages: 0,
      };
      await store.writeState(sync.id, state);
      log.info("cohort export: run started", { syncId: sync.id, runId: state.export.run_id, full });
      active.push(sync);
    }
  }

  // 3: fetch, round-robin, longest-waiting sync first.
  const fetchQueue = active
    .filter((sync) => states.get(sync.id)?.export?.phase === "fetch")
    .sort((a, b) => lastFetch(states.get(a.id)) - lastFetch(states.get(b.id)));
  let stopFetching = false;
  while (fetchQueue.length > 0 && !stopFetching) {
    if (budget.remaining() <= 0 || deps.remainingMs() < limits.fetchMarginMs) break;
    const round = fetchQueue.splice(0, Math.max(1, limits.concurrency));
    const results = await Promise.all(
      round.map(async (sync) => {
        try {
          return await fetchOnePage(sync, states, deps, await queryClient(), report);
        } catch (error) {
          if (error instanceof BudgetExhaustedError || error instanceof RetryableError) {
            // 429 / 5xx after retries, or out of budget: the project is throttled; stop and resume next tick.
            log.warn("cohort export: Query API unavailable, checkpointed", { syncId: sync.id, error: describeError(error) });
            stopFetching = true;
            return "stop" as const;
          }
          const state = states.get(sync.id);
          if (state) {
            markUnhealthy(sync, state, `export failed: ${describeError(error)}`, deps);
            await store.writeState(sync.id, state);
          }
          const entry = report[sync.id];
          if (entry) entry.outcome = "failed";
          return "dropped" as const;
        }
      }),
    );
    await persistBudget();
    results.forEach((result, index) => {
      const sync = round[index];
      if (sync && result === "more") fetchQueue.push(sync);
    });
  }
  for (const sync of active) {
    const entry = report[sync.id];
    if (entry && entry.outcome !== "failed" && states.get(sync.id)?.export?.phase === "fetch") entry.outcome = "fetching";
  }

  // 4: emit finished exports while there is time.
  for (const sync of active) {
    const state = states.get(sync.id);
    const entry = report[sync.id];
    if (!state?.export || state.export.phase !== "emit" || !entry) continue;
    if (deps.remainingMs() < limits.emitMarginMs) {
      entry.outcome = "fetching";
      entry.detail = "emit deferred to the next tick (time)";
      continue;
    }
    await emitRun(sync, state, deps, entry);
  }

  return report;
}

function lastFetch(state: SyncState | undefined): number {
  const at = state?.export?.last_fetch_at;
  return at ? Date.parse(at) : 0;
}

function markUnhealthy(sync: CohortSync, state: SyncState, reason: string, deps: ExportDeps): void {
  state.healthy = false;
  state.unhealthy_reason = reason;
  deps.metric("CohortSyncUnhealthy", 1, sync.id);
  deps.log.error("cohort sync unhealthy", { syncId: sync.id, reason });
}

async function fetchOnePage(
  sync: CohortSync,
  states: Map<string, SyncState>,
  deps: ExportDeps,
  client: QueryClient,
  report: Record<string, SyncReport>,
): Promise<"more" | "done"> {
  const state = states.get(sync.id);
  const run = state?.export;
  if (!state || !run) return "done";
  const entry = report[sync.id];
  let page;
  try {
    page = await client.engagePage({
      cohortId: sync.cohort_id,
      outputProperties: outputPropertiesFor(sync),
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

async function readCurrent(sync: CohortSync, run: ExportState, store: CohortStore): Promise<MemberColumns> {
  const columns = emptyColumns();
  const wanted = identityKeys(sync);
  for (let n = 0; n < run.staged_pages; n++) {
    const staged = await store.getStaged(sync.id, run.run_id, n);
    for (const member of staged.members) {
      columns.ids.push(member.id);
      columns.hashes.push(propertyHash(member.props));
      columns.identities.push(identityOf(member.props, wanted));
    }
  }
  return columns;
}

async function emitRun(sync: CohortSync, state: SyncState, deps: ExportDeps, entry: SyncReport): Promise<void> {
  const run = state.export;
  if (!run) return;
  const { store } = deps;
  const current = await readCurrent(sync, run, store);
  const previousBytes = state.snapshot ? await store.getBytes(keys.snapshot(sync.id)) : undefined;
  const previous = previousBytes ? (await decodeSnapshot(previousBytes)).columns : emptyColumns();
  // A full run with a lost snapshot object is still a full run; a diff run without one must become full.
  const full = run.full || previousBytes === undefined;
  const diff = diffMembers(current, previous, full);
  const plan = planPages(sync.destination, full, diff.sendCount, diff.removedRows.length);

  const pendingKey = keys.pendingSnapshot(sync.id, run.run_id);
  if (run.emitted_pages === 0 || !(await store.exists(pendingKey))) {
    const snapshot = await encodeSnapshot(
      { v: 1, sync_id: sync.id, cohort_id: sync.cohort_id, run_id: run.run_id, created_at: iso(deps.now()), count: 0 },
      current,
      diff.nextSnapshotRows,
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

  // Primary pages (members / add_members), in staging order.
  const primaryPages = plan.expected[plan.primary];
  if (primaryPages > 0) {
    let page = 0;
    let row = 0;
    let pending: PageMember[] = [];
    for (let n = 0; n < run.staged_pages; n++) {
      const staged = await store.getStaged(sync.id, run.run_id, n);
      for (const member of staged.members) {
        if (diff.send[row++] === 1) pending.push(member);
        if (pending.length === 1000) {
          await emit(plan.primary, ++page, primaryPages, pending);
          pending = [];
        }
      }
    }
    if (pending.length > 0 || page === 0) await emit(plan.primary, ++page, primaryPages, pending);
  }
  // Removals carry the identity kept in the snapshot (the profile is gone from the export).
  const removePages = plan.expected.remove_members;
  if (removePages > 0) {
    const removed = diff.removedRows.map(
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

function parseIdentity(identity: string): Record<string, unknown> {
  if (identity === "") return {};
  try {
    const value: unknown = JSON.parse(identity);
    if (value !== null && typeof value === "object" && !Array.isArray(value)) return { ...value };
  } catch {
    // fall through
  }
  return {};
}

async function promote(sync: CohortSync, state: SyncState, deps: ExportDeps): Promise<void> {
  const delivery = state.delivery;
  if (!delivery) return;
  await deps.store.copy(keys.pendingSnapshot(sync.id, delivery.run_id), keys.snapshot(sync.id));
  const now = iso(deps.now());
  state.snapshot = { run_id: delivery.run_id, created_at: now, count: delivery.count };
  if (delivery.full) state.last_full_at = now;
  state.healthy = true;
  delete state.unhealthy_reason;
  delete state.delivery;
  deps.metric("CohortSyncAdvanced", 1, sync.id);
  deps.log.info("cohort export: snapshot advanced", { syncId: sync.id, runId: delivery.run_id, count: delivery.count });
}

/** Reads the ledger of the run that is out; mutates `state`. */
async function settleDelivery(
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

