import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LocalStack } from "../../infra/local/stack.js";
import { eventually } from "../support/eventually.js";
import { cohortSideOf, sendProfiles, startWebhookCohortStack } from "../support/local-stack.js";

/**
 * The cohort side of `npm start`: profiles sent to the local intake reach the
 * sandbox, its Query API exports the cohort, the export handler diffs and queues
 * pages, and the delivery handler posts them, signed, to the local receiver.
 */
let stack: LocalStack;
const SYNC_ID = "pro-users";

beforeAll(async () => {
  stack = await startWebhookCohortStack({ id: SYNC_ID, properties: ["plan"], schedule: "rate(1 hour)" }, 3_600_000);
});
afterAll(() => stack.stop());

describe("local cohort export → webhook", () => {
  it("sends members first, then add_members / remove_members after profiles change", async () => {
    const cohorts = cohortSideOf(stack);
    await sendProfiles(stack, [
      { $distinct_id: "ada", $set: { plan: "pro", $email: "ada@example.com", $first_name: "Ada" } },
      { $distinct_id: "bob", $set: { plan: "pro", $email: "bob@example.com" } },
      { $distinct_id: "cy", $set: { plan: "free", $email: "cy@example.com" } },
    ]);
    await eventually(() => (stack.sandbox?.profiles.size === 3 ? true : undefined));

    await cohorts.tick({ force: [SYNC_ID] });
    const first = await eventually(() => cohorts.receiver.pages.find((p) => p.payload.action === "members"));
    expect(first.payload.parameters.mixpanel_cohort_id).toBe("1");
    expect(first.payload.parameters.mixpanel_cohort_name).toBe("Pro users");
    expect(first.payload.parameters.page_info).toEqual({ total_pages: 1, page_count: 1 });
    expect(first.payload.parameters.members.map((m) => m.mixpanel_distinct_id).sort()).toEqual(["ada", "bob"]);
    expect(first.payload.parameters.members.find((m) => m.mixpanel_distinct_id === "ada")).toMatchObject({
      email: "ada@example.com",
      first_name: "Ada",
      plan: "pro",
    });
    expect(cohorts.receiver.refusals).toEqual([]);

    await sendProfiles(stack, [
      { $distinct_id: "bob", $set: { plan: "free" } },
      { $distinct_id: "cy", $set: { plan: "pro" } },
    ]);
    await eventually(() => (stack.sandbox?.profiles.get("cy")?.plan === "pro" ? true : undefined));
    // A new run starts only once the export sees every page of the first one delivered (the delivery
    // ledger is written just after the receiver answers), so tick until it does, as the schedule would.
    const deadline = Date.now() + 15_000;
    while (!cohorts.receiver.pages.some((p) => p.payload.action === "add_members") && Date.now() < deadline) {
      await cohorts.tick({ force: [SYNC_ID] });
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const added = await eventually(() => cohorts.receiver.pages.find((p) => p.payload.action === "add_members"));
    const removed = await eventually(() => cohorts.receiver.pages.find((p) => p.payload.action === "remove_members"));
    expect(added.payload.parameters.members.map((m) => m.mixpanel_distinct_id)).toEqual(["cy"]);
    expect(removed.payload.parameters.members.map((m) => m.mixpanel_distinct_id)).toEqual(["bob"]);
    expect(added.payload.parameters.mixpanel_session_id).not.toBe(first.payload.parameters.mixpanel_session_id);
    expect([...cohorts.receiver.members(1).keys()].sort()).toEqual(["ada", "cy"]);
  });

  it("runs an operator's tick after the one in flight instead of answering busy", async () => {
    const cohorts = cohortSideOf(stack);
    const reports = await Promise.all([cohorts.tick({}), cohorts.tick({ force: [SYNC_ID] })]);
    for (const report of reports) expect(report).toMatchObject({ syncs: { [SYNC_ID]: expect.any(Object) } });
  });
});
