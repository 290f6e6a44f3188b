import type { QueryBudget, QueryClient } from "../mixpanel/query.js";
import type { DeliveryMessage, SyncState } from "./messages.js";
import type { CohortStore } from "./store.js";
import type { CohortSync } from "../config/cohort-syncs.js";
import type { QuerySync } from "../config/query-syncs.js";
import type { QueryRunDeps, QueryTickOptions, QueryTickReport } from "../queries/run.js";

/**
 * What one export tick works with. `runCohortExport` (export.ts) builds one
 * TickContext and hands it to the steps: settle.ts (read the delivery ledger),
 * schedule.ts (which syncs start a run), fetch-pages.ts (Query API pages within
 * the budget, budget.ts), emit.ts (diff, guard, pages to SQS).
 */
export interface ExportLog {
  info(message: string, extra?: Record<string, unknown>): void;
  warn(message: string, extra?: Record<string, unknown>): void;
  error(message: string, extra?: Record<string, unknown>): void;
}

export interface ExportLimits {
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
  /**
   * The export tick (EventBridge schedule of cohort-export). A sync is due when
   * its interval has passed, give or take half a tick, so `rate(30 minutes)`
   * under a 15-minute tick runs every 30 minutes, not every 45. Default 15 min.
   */
  readonly tickMs?: number;
  /**
   * Largest partition of a partitioned run (partition-layout.ts): an export of more
   * members is diffed and emitted in ceil(members / this) hash-range partitions,
   * a few per invocation. Default 500 000.
   */
  readonly partitionMembers?: number;
  /** Partitioned work (spill, diff, emit) starts no new unit after this much of an invocation. Default 240 000 (4 min). */
  readonly invocationWorkMs?: number;
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
  readonly limits: ExportLimits;
  readonly log: ExportLog;
  readonly metric: (name: string, value: number, syncId: string) => void;
  /** Query extracts (lib/queries), run after the cohort work on the same Query API budget. */
  readonly querySyncs?: { readonly syncs: readonly QuerySync[]; readonly deps: QueryRunDeps };
}

export interface ExportOptions {
  /** Run these syncs now even when not due or disabled (manual trigger). */
  readonly force?: readonly string[];
  /** Process these syncs even when disabled (settle, fetch, emit), without starting a new run. */
  readonly include?: readonly string[];
  /** Forced runs are full `members` syncs (the "force full resync" lever; also releases a mass-removal hold). */
  readonly full?: boolean;
  /** Forced query syncs, dry run, or only them (lib/queries/run.ts). */
  readonly querySyncs?: QueryTickOptions;
}

export type SyncOutcome =
  | "disabled"
  | "not_due"
  | "waiting_for_delivery"
  | "fetching"
  | "enqueued"
  | "advanced"
  | "held"
  | "failed";

export interface SyncReport {
  outcome: SyncOutcome;
  pagesFetched: number;
  pagesEnqueued: number;
  detail?: string;
  /**
   * Braze lanes whose array attribute can pass the workspace's array length: users whose
   * cohort values outnumber `limit` (Braze would drop the excess), braze-arrays.ts.
   */
  brazeArrayOverflow?: { users: number; limit: number; attribute: string };
}

export interface ExportReport {
  readonly queries: number;
  readonly budgetLeft: number;
  readonly syncs: Record<string, SyncReport>;
  readonly querySyncs?: Record<string, QueryTickReport>;
}

export interface TickContext {
  /** Every configured lane (a fan-out sync is one lane per destination). */
  readonly syncs: readonly CohortSync[];
  readonly deps: ExportDeps;
  readonly options: ExportOptions;
  /** Forced by lane id or by the configured sync id (every lane of a fan-out sync). */
  isForced(sync: CohortSync): boolean;
  /** When the tick started: schedule decisions use this, never a later stamp. */
  readonly startedAt: number;
  readonly forced: ReadonlySet<string>;
  readonly states: Map<string, SyncState>;
  readonly report: Record<string, SyncReport>;
  readonly budget: QueryBudget;
  queryClient(): Promise<QueryClient>;
  /** Writes the calls spent so far to _budget.json. */
  persistBudget(): Promise<void>;
}

export const iso = (ms: number) => new Date(ms).toISOString();

export const DEFAULT_TICK_MS = 900_000;

/** Marks a sync unhealthy: state, metric and an error log with the reason. */
export function markUnhealthy(sync: CohortSync, state: SyncState, reason: string, deps: ExportDeps): void {
  state.healthy = false;
  state.unhealthy_reason = reason;
  deps.metric("CohortSyncUnhealthy", 1, sync.id);
  deps.log.error("cohort sync unhealthy", { syncId: sync.id, reason });
}
