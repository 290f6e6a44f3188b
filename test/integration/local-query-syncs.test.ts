import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { runQueryNow } from "../../infra/queries-cli.js";
import { eventually } from "../support/eventually.js";
import { cohortSideOf, sendProfiles, writeStageConfig } from "../support/local-stack.js";

/**
 * The query side of `npm start` with config/local.json's example: profiles sent to the local
 * intake reach the Mixpanel sandbox, its Engage query (`where`) answers the query sync, and the
 * rows reach the local Brevo as contact attributes through the connector's contact path.
 */
let stack: LocalStack;
const SYNC_ID = "local-plans-to-brevo";

/** The local Brevo keys a contact with an email by that email. */
const seatsOf = (name: string) => stack.brevoSandbox?.contacts.get(`${name}@example.com`)?.SEATS;

beforeAll(async () => {
  const local = JSON.parse(readFileSync("config/local.json", "utf8"));
  // The example query sync only: cohort syncs and the connector's own profile sync stay out of the way.
  const configFile = writeStageConfig({ residency: "us", brevo: { ...local.brevo, sync: { events: false, profiles: false, groups: false } }, query_syncs: local.query_syncs }, "relay-queries-");
  stack = await startLocalStack({ configFile, cohorts: { tickMs: 3_600_000 }, brevoRateLimit: 1000 });
});
afterAll(() => stack.stop());

describe("local query sync → Brevo attributes", () => {
  it("dry run shows the rows and sends nothing; runs send changed rows only", async () => {
    const cohorts = cohortSideOf(stack);
    await sendProfiles(stack, [
      { $distinct_id: "ada", $set: { plan: "pro", seats: 5, $email: "ada@example.com" } },
      { $distinct_id: "bob", $set: { plan: "free", seats: 1, $email: "bob@example.com" } },
      { $distinct_id: "cy", $set: { $email: "cy@example.com" } },
    ]);
    await eventually(() => (stack.sandbox?.profiles.size === 3 ? true : undefined));
    const invoke = (input: unknown) => cohorts.tick(input);

    const printed: string[] = [];
    expect(await runQueryNow(invoke, SYNC_ID, true, (line) => printed.push(line))).toBe("dry_run");
    expect(printed.join("\n")).toContain('"ada" {"PLAN_TYPE":"pro","SEATS":5,"email":"ada@example.com"}');
    expect(stack.brevoSandbox?.contacts.size).toBe(0);

    expect(await runQueryNow(invoke, SYNC_ID, false, () => undefined)).toBe("delivered");
    expect(seatsOf("ada")).toBe(5);
    expect(seatsOf("bob")).toBe(1);
    expect(seatsOf("cy")).toBeUndefined(); // no plan: not matched by the where expression

    await sendProfiles(stack, [{ $distinct_id: "bob", $set: { seats: 3 } }]);
    await eventually(() => (stack.sandbox?.profiles.get("bob")?.seats === 3 ? true : undefined));
    const lines: string[] = [];
    await runQueryNow(invoke, SYNC_ID, false, (line) => lines.push(line));
    expect(lines[0]).toMatch(/delivered; 2 row\(s\) read, 1 sent, 1 unchanged, 0 rejected/);
    expect(seatsOf("bob")).toBe(3);
  });
});
