import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { logger } from "../../lib/observability/telemetry.js";
import { jsonLinesWhile } from "../support/log-capture.js";

let stack: LocalStack;
beforeAll(async () => {
  stack = await startLocalStack({ startPollers: false, cohorts: { tickMs: 60_000 } });
}, 60_000);
afterAll(async () => {
  await stack.stop();
});

/** The JSON lines the handlers of this process write at level INFO while `action` runs. */
async function linesOf(action: () => Promise<unknown>): Promise<Record<string, unknown>[]> {
  logger.setLogLevel("INFO");
  try {
    return await jsonLinesWhile(action);
  } finally {
    logger.setLogLevel("WARN");
  }
}

const post = (distinctId: string) =>
  fetch(`${stack.intakeUrl}/v1/events`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${stack.intakeToken}` },
    body: JSON.stringify([{ event: "Signed Up", properties: { distinct_id: distinctId, time: Math.floor(Date.now() / 1000) } }]),
  });

describe("the local stack's handlers log with their own Lambda context", () => {
  it("intake lines name intake, after and while the cohort export and the forwarder run", async () => {
    const lines = await linesOf(async () => {
      await stack.cohorts?.tick();
      await post("ctx-user-1");
      await Promise.all([stack.forwarderPoller.pollOnce(1), stack.cohorts?.tick({ force: ["local-pro-users"] }), post("ctx-user-2")]);
    });
    const byMessage = (message: string) => lines.filter((line) => line.message === message);
    const intakeLines = byMessage("intake batch");
    expect(intakeLines).toHaveLength(2);
    for (const line of intakeLines) expect(line).toMatchObject({ function_name: "intake", function_arn: expect.stringContaining(":function:intake") });
    expect(new Set(intakeLines.map((line) => line.function_request_id)).size).toBe(2);
    const exportLines = byMessage("cohort export tick");
    expect(exportLines.length).toBeGreaterThanOrEqual(1);
    for (const line of exportLines) expect(line.function_name).toBe("cohort-export");
    for (const line of byMessage("forwarded batch")) expect(line.function_name).toBe("forwarder");
  });
});
