import { ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LocalStack } from "../../infra/local/stack.js";
import { createCohortStore } from "../../lib/cohorts/store.js";
import { cohortSideOf, sendProfiles, startWebhookCohortStack } from "../support/local-stack.js";

/**
 * End to end on the local stack (intake → sandbox → Query API → cohort-export
 * → deliveries queue → webhook-delivery → receiver): a receiver that answers
 * 302 is never counted as delivered, the run fails, and once the receiver is
 * fixed the members arrive within one schedule interval (rate(1 minute), tick
 * 1 minute) without an operator.
 */
let stack: LocalStack;
const SYNC_ID = "moved-hook";
const SCHEDULE_MS = 60_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  stack = await startWebhookCohortStack({ id: SYNC_ID, schedule: "rate(1 minute)" }, SCHEDULE_MS);
});
afterAll(() => stack.stop());

describe("local stack: a redirecting webhook, then recovery", () => {
  it("a 302 is never counted delivered; members arrive within one schedule interval of the fix", async () => {
    const cohorts = cohortSideOf(stack);
    const store = createCohortStore(stack.s3, stack.snapshotBucket);
    await sendProfiles(stack, [
      { $distinct_id: "ada", $set: { plan: "pro", $email: "ada@example.com" } },
      { $distinct_id: "bob", $set: { plan: "pro", $email: "bob@example.com" } },
    ]);
    for (let i = 0; i < 100 && stack.sandbox?.profiles.size !== 2; i++) await sleep(100);

    cohorts.receiver.setRedirect("http://127.0.0.1:9/moved");
    await cohorts.tick();
    const firstRun = (await store.readState(SYNC_ID)).delivery?.run_id ?? "";
    expect(firstRun).not.toBe("");
    // The delivery poller takes the page; the 302 is a permanent refusal: DLQ, failed ledger.
    let dead: string | undefined;
    for (let i = 0; i < 100 && dead === undefined; i++) {
      const result = await stack.sqs.send(new ReceiveMessageCommand({ QueueUrl: stack.deliveries.dlqUrl, MaxNumberOfMessages: 1 }));
      dead = result.Messages?.[0]?.Body;
      if (dead === undefined) await sleep(100);
    }
    expect(dead).toContain("redirect (302) to http://127.0.0.1:9/moved");
    expect(cohorts.receiver.refusals.map((r) => r.status)).toEqual([302]);
    expect(await store.isDelivered(SYNC_ID, firstRun, "members", 1)).toBe(false);
    expect(cohorts.receiver.pages).toEqual([]);

    await cohorts.tick();
    const failed = await store.readState(SYNC_ID);
    expect(failed.healthy).toBe(false);
    expect(failed.unhealthy_reason).toMatch(/302/);
    expect(failed.snapshot).toBeUndefined();

    // Fixed. Tick as the schedule would (here every second) until the members arrive.
    cohorts.receiver.setRedirect(undefined);
    const fixedAt = Date.now();
    while (cohorts.receiver.members(1).size < 2 && Date.now() - fixedAt < 2 * SCHEDULE_MS) {
      await cohorts.tick();
      await sleep(1_000);
    }
    const elapsed = Date.now() - fixedAt;
    console.log(`local stack: members delivered ${(elapsed / 1000).toFixed(1)} s after the receiver was fixed (schedule rate(1 minute))`);
    expect([...cohorts.receiver.members(1).keys()].sort()).toEqual(["ada", "bob"]);
    expect(elapsed).toBeLessThanOrEqual(SCHEDULE_MS);
    const page = cohorts.receiver.pages[0];
    expect(page?.payload.action).toBe("members");
    expect(page?.payload.parameters.mixpanel_session_id).toMatch(/\.members$/);
    expect(page?.payload.parameters.mixpanel_session_id).not.toBe(`${firstRun}.members`);
  }, 120_000);
});
