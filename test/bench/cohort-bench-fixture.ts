import type { ExportDeps } from "../../lib/cohorts/export.js";
import type { SyncState } from "../../lib/cohorts/messages.js";
import { partitionOf } from "../../lib/cohorts/partition-layout.js";
import { idHash, propertyHash } from "../../lib/cohorts/hash.js";
import { identityOf } from "../../lib/cohorts/identity.js";
import { type MemberColumns, emptyColumns } from "../../lib/cohorts/member-columns.js";
import { type CohortSync, cohortSyncsSchemaFor } from "../../lib/config/cohort-syncs.js";

/** What the cohort benches (cohort-diff, cohort-partitioned) share: one webhook sync, its members, its export. */
export const BENCH_SYNC = "bench";

/** The export's limits as deployed, with `overrides` (a partition size, one unit per invocation). */
export function benchLimits(overrides: Partial<ExportDeps["limits"]> = {}): ExportDeps["limits"] {
  return {
    queriesPerHour: 55,
    queriesPerRun: 20,
    concurrency: 3,
    deliveryTimeoutMs: 86_400_000,
    fetchMarginMs: 45_000,
    emitMarginMs: 120_000,
    ...overrides,
  };
}

export function benchSync(): CohortSync {
  const [sync] = cohortSyncsSchemaFor({ localStage: false }).parse([
    { id: BENCH_SYNC, cohort_id: 1, properties: ["plan", "seats"], destination: { type: "webhook", url: "https://hooks.example.com/cohorts", signing_secret: "bench/hook" } },
  ]);
  if (!sync) throw new Error("no sync");
  return sync;
}

/** Member i's exported properties; `changed` flips its plan. */
export const benchProps = (i: number, changed: boolean): Record<string, unknown> => ({
  $email: `user${i}@example.com`,
  $first_name: `First${i}`,
  $last_name: `Last${i}`,
  plan: changed ? "free" : "pro",
  seats: i % 50,
});

/** Member i's distinct id, scattered over the id-hash space. */
export const benchMemberId = (i: number): string => `d-${(i * 2654435761) % 4294967296}-${i}`;

/** Members 0 … members-1 by the partition their id hashes to. */
export function membersByPartition(members: number, partitions: number): number[][] {
  const byPart: number[][] = Array.from({ length: partitions }, () => []);
  for (let i = 0; i < members; i++) byPart[partitionOf(idHash(benchMemberId(i)), partitions)]?.push(i);
  return byPart;
}

/** The previous run's snapshot columns of these members, with their unchanged properties. */
export function previousSnapshotColumns(indexes: readonly number[], identityKeys: readonly string[]): MemberColumns {
  const cols = emptyColumns();
  for (const i of indexes) {
    const p = benchProps(i, false);
    cols.ids.push(benchMemberId(i));
    cols.hashes.push(propertyHash(p));
    cols.identities.push(identityOf(p, identityKeys));
  }
  return cols;
}

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
