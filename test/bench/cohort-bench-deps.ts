import type { ExportDeps } from "../../lib/cohorts/export.js";

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
