import { createHmac } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createQueryBudget, createQueryClient } from "../../../lib/mixpanel/query.js";
import { piiConfigSchema } from "../../../lib/config/pii.js";
import { createPiiPolicy, protectProperties } from "../../../lib/pii/policy.js";
import { createCohortQueryApi } from "../../../infra/local/peers/mixpanel-query.js";

/** Cohort members read from the (local) Query API get the stage's PII rules before anything else sees them. */
const CREDS = { projectId: "99", username: "sa", secret: "pw" };
const KEY = "cohort-member-pii-key-0123456789abcdef";
let server: Server;
let base = "";

beforeAll(async () => {
  const profiles = new Map<string, Record<string, unknown>>([["u1", { $email: "member@example.com", phone: "+1555", plan: "pro" }]]);
  const api = createCohortQueryApi({ profiles: () => profiles, cohorts: [{ id: 1, name: "All", where: () => true }], ...CREDS, pageSize: 10, queriesPerHour: 10, now: Date.now });
  server = createServer((req, res) => void api.handle(req, res, new URL(req.url ?? "/", "http://x")));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/query`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe("cohort members and PII rules", () => {
  it("hashes and drops member properties as each page is read", async () => {
    const policy = createPiiPolicy(piiConfigSchema.parse({ properties: { $email: "hash", phone: "drop" } }), KEY);
    if (!policy) throw new Error("policy expected");
    const client = createQueryClient({
      baseUrl: base,
      credentials: CREDS,
      fetch,
      timeoutMs: 2000,
      retryDeps: { sleep: async () => undefined, random: () => 0, remainingMs: () => 600_000 },
      budget: createQueryBudget(5, 1),
      now: Date.now,
      protectMemberProperties: (properties) => protectProperties(properties, policy),
    });
    const page = await client.engagePage({ cohortId: 1, outputProperties: ["$email", "phone", "plan"], includeAllUsers: true, page: 0 });
    expect(page.results).toEqual([
      { $distinct_id: "u1", $properties: { $email: createHmac("sha256", KEY).update("member@example.com").digest("hex"), plan: "pro" } },
    ]);
  });
});
