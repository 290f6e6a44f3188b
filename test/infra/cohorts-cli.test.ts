import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOCAL_COHORT_EXPORT_PATH, LOCAL_WEBHOOK_SIGNING_SECRET_NAME } from "../../infra/local/cohorts.js";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { type CliExportReport, exportReportSchema, followExport } from "../../infra/cohorts-cli.js";
import { freeLoopbackPort } from "../../infra/local/peers/local-server.js";

/**
 * `npm run cohorts:export -- --stage local --sync <id> [--full]` against the
 * local stack: a disabled `"once"` sync is exported on demand and followed
 * until its pages are delivered.
 */
let stack: LocalStack;
const SYNC_ID = "one-time";


beforeAll(async () => {
  const webhookPort = await freeLoopbackPort();
  const configFile = join(mkdtempSync(join(tmpdir(), "relay-cli-")), "local.json");
  writeFileSync(
    configFile,
    JSON.stringify({
      cohort_syncs: [
        {
          id: SYNC_ID,
          cohort_id: 2,
          enabled: false,
          schedule: "once",
          destination: { type: "webhook", url: `http://127.0.0.1:${webhookPort}/hook`, signing_secret: LOCAL_WEBHOOK_SIGNING_SECRET_NAME },
        },
      ],
    }),
  );
  stack = await startLocalStack({ configFile, cohorts: { webhookPort, tickMs: 3_600_000 } });
});
afterAll(() => stack.stop());

const invoke = async (input: unknown): Promise<CliExportReport> => {
  const response = await fetch(`${stack.intakeUrl}${LOCAL_COHORT_EXPORT_PATH}`, { method: "POST", body: JSON.stringify(input) });
  expect(response.status).toBe(200);
  return exportReportSchema.parse(await response.json());
};

describe("cohorts:export", () => {
  it("exports a disabled one-time sync on demand and follows it until delivered", async () => {
    const cohorts = stack.cohorts;
    if (!cohorts) throw new Error("cohort side not started");
    await fetch(`${stack.intakeUrl}/v1/profiles`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.intakeToken}`, "content-type": "application/json" },
      body: JSON.stringify([{ $distinct_id: "ada", $set: { $email: "ada@example.com" } }]),
    });
    for (let i = 0; i < 100 && stack.sandbox?.profiles.size !== 1; i++) await new Promise((r) => setTimeout(r, 100));

    // Not forced: a disabled sync does nothing.
    expect((await invoke({})).syncs[SYNC_ID]?.outcome).toBe("disabled");

    const lines: string[] = [];
    const result = await followExport(invoke, { syncId: SYNC_ID, full: true, maxTicks: 40, pauseMs: 250, print: (line) => lines.push(line) });
    expect(result.outcome).toBe("advanced");
    expect(lines[0]).toMatch(/^tick 1: enqueued; 1 page\(s\) fetched, 1 enqueued/);
    expect([...cohorts.receiver.members(2).keys()]).toEqual(["ada"]);

    // "once": it ran; a plain tick does not start it again.
    expect((await invoke({ include: [SYNC_ID] })).syncs[SYNC_ID]?.outcome).toBe("not_due");
  }, 60_000);
});
