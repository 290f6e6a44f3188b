import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { retargetLocalPeers } from "../../infra/local/cohorts.js";
import { freeLoopbackPort } from "../../infra/local/peers/local-server.js";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { eventually } from "../support/eventually.js";
import { cohortSideOf, sendProfiles, writeStageConfig } from "../support/local-stack.js";

/**
 * `npm start` with config/local.json as shipped (only moved to free ports, as `npm start` does
 * for the *_PORT variables): one cohort sync of each destination kind, webhook, Brevo list and
 * Braze, each delivering to its local peer with the secrets the local stack serves.
 */
let stack: LocalStack;

beforeAll(async () => {
  const [webhook, brevo, braze] = [await freeLoopbackPort(), await freeLoopbackPort(), await freeLoopbackPort()];
  const { config, moved } = retargetLocalPeers(JSON.parse(readFileSync("config/local.json", "utf8")), { webhook, brevo, braze });
  expect(moved).toHaveLength(3);
  const configFile = writeStageConfig(config, "relay-local-destinations-");
  stack = await startLocalStack({ configFile, brevoPort: brevo, brazePort: braze, cohorts: { webhookPort: webhook, tickMs: 60_000 } });
}, 60_000);
afterAll(() => stack.stop());

describe("the local stack runs every destination kind of config/local.json", () => {
  it("webhook, Brevo list and Braze each receive the cohort, with the secrets served locally", async () => {
    const cohorts = cohortSideOf(stack);
    await sendProfiles(stack, [
      { $distinct_id: "ada", $set: { plan: "pro", $email: "ada@example.com", $first_name: "Ada" } },
      { $distinct_id: "bob", $set: { plan: "free", $email: "bob@example.com" } },
    ]);
    await eventually(() => stack.sandbox?.profiles.size === 2);
    const report = (await cohorts.tick()) as { syncs: Record<string, { outcome: string }> };
    expect(Object.fromEntries(Object.entries(report.syncs).map(([id, entry]) => [id, entry.outcome]))).toEqual({
      "local-pro-users": "enqueued",
      "local-email-brevo": "enqueued",
      "local-pro-braze": "enqueued",
    });

    await eventually(() => cohorts.receiver.members(1).has("ada"));
    expect([...cohorts.receiver.members(1).keys()]).toEqual(["ada"]);
    await eventually(() => cohorts.braze.arrayOf("ada", "mixpanel_cohorts").length > 0);
    expect(cohorts.braze.arrayOf("ada", "mixpanel_cohorts")).toEqual(["Pro users"]);
    expect(cohorts.braze.users.has("bob")).toBe(false);
    await eventually(() => stack.brevoSandbox?.lists.get(16)?.size === 2);
    expect([...(stack.brevoSandbox?.lists.get(16) ?? [])].sort()).toEqual(["ada@example.com", "bob@example.com"]);

    // The next tick settles every run: all three advance, none is unhealthy.
    const settled = (await cohorts.tick()) as { syncs: Record<string, { outcome: string }> };
    expect(Object.values(settled.syncs).map((entry) => entry.outcome)).toEqual(["advanced", "advanced", "advanced"]);
    expect(cohorts.secrets.calls).toEqual(
      expect.arrayContaining(["mixpanel-relay/local/destinations/webhook-signing", "mixpanel-relay/local/destinations/brevo", "mixpanel-relay/local/destinations/braze"]),
    );
  }, 60_000);
});
