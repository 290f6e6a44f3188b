import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createQueryBudget, createQueryClient, type QueryClient } from "../../../lib/mixpanel/query.js";
import { type CohortQueryApi, createCohortQueryApi } from "../../../infra/local/peers/mixpanel-query.js";
import { querySyncsSchemaFor, type QuerySync } from "../../../lib/config/query-syncs.js";
import { runQuerySyncs, type QueryRunDeps } from "../../../lib/queries/run.js";
import { createQueryStore } from "../../../lib/queries/store.js";
import type { RowRejection } from "../../../lib/queries/rows.js";
import type { BrevoProfileSend } from "../../../lib/queries/deliver.js";

const CREDS = { projectId: "99", username: "sa", secret: "pw" };
const HOUR = 3_600_000;
/** Stands in for a shipped script: the sandbox recognises it by its exact text. */
const SCRIPT_WITH_KEYLESS_ROW = "function main() { return People().map(function (u) { return u.properties; }); }";

function syncOf(raw: unknown): QuerySync {
  const [sync] = querySyncsSchemaFor({ localStage: true }).parse([raw]);
  if (!sync) throw new Error("no sync");
  return sync;
}

describe("query syncs: Engage/JQL rows to a destination", () => {
  let server: Server;
  let api: CohortQueryApi;
  let base: string;
  let now = 1_800_000_000_000;
  const profiles = new Map<string, Record<string, unknown>>();
  const objects = new Map<string, Uint8Array>();
  const sentLines: string[][] = [];
  const rejectedStored: RowRejection[][] = [];

  beforeEach(async () => {
    profiles.clear();
    objects.clear();
    sentLines.length = 0;
    rejectedStored.length = 0;
    profiles.set("u1", { plan: "pro", seats: 5, $email: "u1@x" });
    profiles.set("u2", { plan: "free", seats: 1, $email: "u2@x" });
    profiles.set("u3", { plan: "pro", seats: 9, $email: "u3@x" });
    profiles.set("u4", { $email: "u4@x" });
    api = createCohortQueryApi({
      profiles: () => profiles,
      cohorts: [],
      ...CREDS,
      pageSize: 2,
      now: () => now,
      scripts: [
        {
          source: SCRIPT_WITH_KEYLESS_ROW,
          run: () => [
            { distinct_id: "a", plan: "pro" },
            { plan: "orphan" },
            { distinct_id: "c", plan: "free" },
          ],
        },
      ],
    });
    server = createServer((req, res) => void api.handle(req, res, new URL(req.url ?? "/", "http://x")));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/query`;
  });
  afterEach(() => new Promise<void>((r) => server.close(() => r())));

  const budgetFor = (calls: number) => {
    const budget = createQueryBudget(calls, 3);
    let client: QueryClient | undefined;
    return {
      queryClient: async () =>
        (client ??= createQueryClient({
          baseUrl: base,
          credentials: CREDS,
          fetch,
          timeoutMs: 2000,
          retryDeps: { sleep: async () => undefined, random: () => 0, remainingMs: () => 600_000 },
          budget,
          now: () => now,
        })),
      remaining: () => budget.remaining(),
      startedAt: now,
    };
  };

  const deps = (): QueryRunDeps => {
    const brevoSend: BrevoProfileSend = async (_kind, lines) => {
      sentLines.push([...lines]);
      return lines.map(() => ({ status: "sent" }) as const);
    };
    return {
      store: createQueryStore({ getBytes: async (key) => objects.get(key), putBytes: async (key, body) => void objects.set(key, body) }),
      delivery: {
        brevoSend: async () => brevoSend,
        projectId: () => CREDS.projectId,
        network: { fetchFor: () => fetch },
        timeoutMs: 2000,
        retryDeps: { sleep: async () => undefined, random: () => 0, remainingMs: () => 600_000 },
        now: () => now,
        secrets: { getJson: async () => { throw new Error("no secrets in this test"); } } as never,
        warn: () => undefined,
      },
      readScript: async () => SCRIPT_WITH_KEYLESS_ROW,
      storeRejected: async (_sync, _run, rows) => void rejectedStored.push([...rows]),
      metric: () => undefined,
      log: { info: () => undefined, error: () => undefined },
      now: () => now,
      newId: () => `run-${now}`,
      tickMs: 900_000,
    };
  };

  const profilesSync = syncOf({
    id: "plans",
    schedule: "rate(1 hour)",
    source: { type: "profiles", where: 'defined(properties["plan"]) and properties["plan"] != "legacy"', output_properties: ["plan", "seats"] },
    destination: { type: "brevo_attributes", attributes: { plan: "PLAN", seats: "SEATS" } },
  });

  it("sends only the rows whose mapped values changed on its second run", async () => {
    const d = deps();
    const first = await runQuerySyncs([profilesSync], budgetFor(10), d);
    expect(first.plans).toMatchObject({ outcome: "delivered", rows_read: 3, sent: 3, unchanged: 0, rejected: 0 });
    // Three profiles over pages of two: the second page was fetched with the first page's session.
    expect(api.queries.filter((q) => q.path === "/engage").map((q) => q.form.page ?? "0")).toEqual(["0", "1"]);

    profiles.set("u2", { plan: "pro", seats: 1, $email: "u2@x" });
    profiles.set("u4", { plan: "legacy" });
    now += HOUR;
    const second = await runQuerySyncs([profilesSync], budgetFor(10), d);
    expect(second.plans).toMatchObject({ outcome: "delivered", rows_read: 3, sent: 1, unchanged: 2 });
    expect(sentLines.at(-1)?.map((line) => JSON.parse(line))).toEqual([{ $distinct_id: "u2", $set: { plan: "pro", seats: 1 } }]);

    // Not due yet a minute later: no call, nothing sent.
    now += 60_000;
    const third = await runQuerySyncs([profilesSync], budgetFor(10), d);
    expect(third.plans?.outcome).toBe("not_due");
    expect(sentLines).toHaveLength(2);
  });

  it("rejects a JQL row without the key alone, stores it with its reason, and delivers the others", async () => {
    const jql = syncOf({
      id: "jql-plans",
      source: { type: "jql", script_file: "queries/plan-by-user.js", params: { plans: ["pro"] } },
      destination: { type: "brevo_attributes", attributes: { plan: "PLAN" } },
    });
    const report = await runQuerySyncs([jql], budgetFor(10), deps());
    expect(report["jql-plans"]).toMatchObject({ outcome: "delivered", rows_read: 3, sent: 2, rejected: 1 });
    expect(sentLines.flat().map((line) => JSON.parse(line).$distinct_id)).toEqual(["a", "c"]);
    expect(rejectedStored).toHaveLength(1);
    expect(rejectedStored[0]).toEqual([
      { index: 1, code: "missing_key", reason: 'the row has no "distinct_id" (the sync\'s key)', payload: { plan: "orphan" } },
    ]);
    const jqlCall = api.queries.find((q) => q.path === "/jql");
    expect(jqlCall?.status).toBe(200);
    expect(JSON.parse(jqlCall?.form.params ?? "null")).toEqual({ plans: ["pro"] });
  });

  it("dry run sends nothing, stores nothing and reports what would be sent", async () => {
    const report = await runQuerySyncs([profilesSync], budgetFor(10), deps(), { force: ["plans"], dryRun: true, only: true });
    expect(report.plans).toMatchObject({ outcome: "dry_run", rows_read: 3, sent: 0 });
    expect(report.plans?.would_send?.count).toBe(3);
    expect(report.plans?.would_send?.rows[0]).toEqual({ key: "u1", values: { PLAN: "pro", SEATS: 5 } });
    expect(sentLines).toEqual([]);
    expect(objects.size).toBe(0);
  });

  it("waits for the shared budget without stamping the sync, and runs once budget is back", async () => {
    const waiting = await runQuerySyncs([profilesSync], budgetFor(1), deps());
    expect(waiting.plans?.outcome).toBe("waiting_for_budget");
    expect(sentLines).toEqual([]);
    const later = await runQuerySyncs([profilesSync], budgetFor(10), deps());
    expect(later.plans?.outcome).toBe("delivered");
  });
});
