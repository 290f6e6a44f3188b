import { describe, expect, it } from "vitest";
import { parseStageConfig } from "../../../lib/config/stage.js";
import { parseCron } from "../../../lib/config/query-syncs.js";
import { cronFiresBetween, isQueryDue } from "../../../lib/queries/schedule.js";
import { runQueryNow } from "../../../infra/queries-cli.js";
import { renderStatus, type StatusReport } from "../../../infra/status.js";

const base = {
  id: "plans",
  source: { type: "profiles", output_properties: ["plan"] },
  destination: { type: "brevo_attributes", attributes: { plan: "PLAN" } },
};

describe("query_syncs config", () => {
  it("names the key of each problem", () => {
    const bad = (sync: unknown) => () => parseStageConfig({ query_syncs: [sync] }, "test.json");
    expect(bad({ ...base, schedule: "every day" })).toThrow(/query_syncs\.0\.schedule/);
    expect(bad({ ...base, source: { type: "jql", script_file: "../etc/passwd.js" } })).toThrow(/query_syncs\.0\.source\.script_file/);
    expect(bad({ ...base, destination: { type: "brevo_attributes", attributes: { plan: "plan" } } })).toThrow(/query_syncs\.0\.destination\.attributes\.plan/);
    expect(bad({ ...base, destination: { type: "brevo_attributes", attributes: { seats: "SEATS" } } })).toThrow(/"seats" is used but not in output_properties/);
    expect(bad({ ...base, send: "some" })).toThrow(/query_syncs\.0\.send/);
    expect(() => parseStageConfig({ query_syncs: [base, base] }, "test.json")).toThrow(/query_syncs\.1\.id: duplicate query sync id "plans"/);
  });

  it("defaults: key distinct_id, send changed, daily", () => {
    const config = parseStageConfig({ query_syncs: [base] }, "test.json");
    expect(config.query_syncs[0]).toMatchObject({ key: "distinct_id", send: "changed", schedule: "rate(1 day)", enabled: true });
  });

  it("schedules rate, once and EventBridge cron (UTC)", () => {
    expect(parseCron("cron(0 6 * * ? *)")).toBeDefined();
    expect(parseCron("cron(0 6 * * * *)")).toBeUndefined(); // one of day-of-month / day-of-week must be ?
    expect(parseCron("cron(0 6 ? * MON *)")).toBeUndefined(); // names are not supported
    const daily6 = parseCron("cron(0 6 * * ? *)");
    if (!daily6) throw new Error("unparsed");
    const day = Date.parse("2026-03-01T00:00:00Z");
    expect(cronFiresBetween(daily6, day, day + 6 * 3_600_000 - 60_000)).toBe(false);
    expect(cronFiresBetween(daily6, day, day + 6 * 3_600_000)).toBe(true);
    const tick = 900_000;
    const at = day + 6 * 3_600_000 + 300_000;
    expect(isQueryDue({ schedule: "cron(0 6 * * ? *)" }, { last_started_at: new Date(day).toISOString() }, at, tick)).toBe(true);
    expect(isQueryDue({ schedule: "cron(0 6 * * ? *)" }, { last_started_at: new Date(at).toISOString() }, at + tick, tick)).toBe(false);
    expect(isQueryDue({ schedule: "once" }, { last_started_at: new Date(day).toISOString() }, at, tick)).toBe(false);
    expect(isQueryDue({ schedule: "once" }, {}, at, tick)).toBe(true);
  });
});

describe("npm run queries:run", () => {
  it("asks the export for one query sync only, and prints a dry run's rows", async () => {
    const inputs: unknown[] = [];
    const lines: string[] = [];
    const outcome = await runQueryNow(
      async (input) => {
        inputs.push(input);
        return {
          queries: 1,
          budgetLeft: 19,
          syncs: {},
          querySyncs: {
            plans: {
              outcome: "dry_run", rows_read: 2, sent: 0, unchanged: 0, rejected: 1, not_delivered: 0, queries: 1,
              would_send: { count: 1, rows: [{ key: "u1", values: { PLAN: "pro" } }] },
              would_reject: [{ index: 1, code: "missing_key", reason: 'the row has no "distinct_id"' }],
            },
          },
        };
      },
      "plans",
      true,
      (line) => lines.push(line),
    );
    expect(outcome).toBe("dry_run");
    expect(inputs).toEqual([{ query_syncs: { force: ["plans"], dry_run: true, only: true } }]);
    expect(lines.join("\n")).toContain('"u1" {"PLAN":"pro"}');
    expect(lines.join("\n")).toContain("would reject row 1: missing_key");
  });
});

describe("npm run status: query syncs", () => {
  it("shows each query sync's last run counts", () => {
    const report: StatusReport = {
      stage: "dev",
      region: "eu-west-1",
      generatedAt: "2026-03-01T00:00:00.000Z",
      queues: [],
      rejected: { since: "2026-02-22", counts: [], objectsRead: 0, truncated: false },
      cohorts: [],
      querySyncs: [
        {
          id: "plans",
          destination: "brevo_attributes",
          schedule: "rate(1 hour)",
          enabled: true,
          lastStarted: "2026-03-01T00:00:00.000Z",
          lastRun: { outcome: "delivered", rows_read: 120, sent: 7, unchanged: 112, rejected: 1, not_delivered: 0 },
        },
      ],
      alarms: [],
    };
    const text = renderStatus(report);
    expect(text).toContain("Query syncs");
    expect(text).toMatch(/plans\s+brevo_attributes\s+rate\(1 hour\)\s+2026-03-01T00:00:00.000Z\s+delivered\s+120\s+7\s+112\s+1\s+0/);
  });
});
