import type { ExportDeps } from "../../lib/cohorts/export.js";
import type { SyncState } from "../../lib/cohorts/messages.js";

/** Lambda's 15-minute limit: what an export invocation's remainingMs counts down from. */
const LAMBDA_TIMEOUT_MS = 900_000;

/**
 * The export's dependencies as the cohort benches run it: pages are already staged (no Query API
 * call), enqueued pages are only counted, the clock and the deadline are real.
 */
export function benchExportDeps(store: ExportDeps["store"], limits: ExportDeps["limits"], startedAt: number, onEnqueue: (pages: number) => void): ExportDeps {
  return {
    store,
    createQueryClient: async () => {
      throw new Error("the bench stages its pages; no Query API call is expected");
    },
    enqueue: async (messages) => {
      onEnqueue(messages.length);
    },
    projectId: "1",
    now: Date.now,
    newId: () => "unused",
    remainingMs: () => LAMBDA_TIMEOUT_MS - (Date.now() - startedAt),
    limits,
    log: { info: () => {}, warn: () => {}, error: (message, extra) => console.error(message, extra) },
    metric: () => {},
  };
}

/**
 * A sync whose previous run left a snapshot of `members` (in `partitions`) and whose next run
 * has staged all `stagedPages` pages: the state the export's spill, diff and emit start from.
 */
export function stagedRunState(members: number, partitions: number, stagedPages: number): SyncState {
  const now = new Date().toISOString();
  return {
    v: 1,
    healthy: true,
    last_started_at: now,
    snapshot: { run_id: "prev", created_at: now, count: members, ...(partitions > 1 ? { partitions } : {}) },
    export: {
      run_id: "next",
      started_at: now,
      full: false,
      operator_full: false,
      cohort: { id: 1, name: "Bench", description: "" },
      project_id: "1",
      phase: "emit",
      next_page: stagedPages,
      staged_pages: stagedPages,
      staged_members: members,
      total: members,
      emitted_pages: 0,
    },
  };
}
