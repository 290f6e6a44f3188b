import { describe, expect, it } from "vitest";
import { runCohortExport } from "../../../lib/cohorts/export.js";
import type { ExportDeps } from "../../../lib/cohorts/tick.js";

describe("a tick of a stage with no cohort or query syncs", () => {
  it("touches neither the store nor the Query API", async () => {
    const touched: string[] = [];
    const refuse = (name: string) => () => {
      touched.push(name);
      throw new Error(`${name} called`);
    };
    const store = new Proxy({}, { get: (_target, name) => refuse(`store.${String(name)}`) });
    const deps = {
      store,
      createQueryClient: refuse("createQueryClient"),
      enqueue: refuse("enqueue"),
      projectId: "1",
      now: () => 1_700_000_000_000,
      newId: () => "id",
      remainingMs: () => 60_000,
      limits: { queriesPerRun: 10, queriesPerHour: 60, concurrency: 5 },
      log: { info: () => {}, warn: () => {}, error: () => {} },
      metric: () => {},
    } as unknown as ExportDeps;

    expect(await runCohortExport([], deps)).toEqual({ queries: 0, budgetLeft: 0, syncs: {} });
    expect(touched).toEqual([]);
  });
});
