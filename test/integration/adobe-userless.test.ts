import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { eventually } from "../support/eventually.js";

/** Adobe events whose Distinct ID was left empty go through the queue to Mixpanel user-less. */
let stack: LocalStack;
const NOW_S = () => Math.floor(Date.now() / 1000);


beforeAll(async () => {
  stack = await startLocalStack({ visibilityTimeoutSeconds: 2 });
});
afterAll(() => stack.stop());

describe("Adobe events without distinct_id", () => {
  it("are sent with distinct_id \"\" (absent, null or empty), not rejected", async () => {
    const response = await fetch(`${stack.intakeUrl}/v1/adobe/events`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${stack.intakeToken}` },
      body: JSON.stringify([
        { event: "Anonymous View", properties: { token: "t", time: String(NOW_S()), $insert_id: "userless-1" } },
        { event: "Anonymous View", properties: { time: NOW_S(), distinct_id: null, $insert_id: "userless-2" } },
        { event: "Anonymous View", properties: { time: NOW_S(), distinct_id: "", $insert_id: "userless-3" } },
      ]),
    });
    expect(response.status).toBe(202);
    expect(await response.json()).toMatchObject({ accepted: 3, rejected: 0, errors: [] });
    const arrived = await eventually(() => {
      const found = stack.sandbox?.events.filter((e) => e.event === "Anonymous View") ?? [];
      return found.length === 3 ? found : undefined;
    });
    expect(arrived.map((e) => e.properties.distinct_id)).toEqual(["", "", ""]);
  });
});
