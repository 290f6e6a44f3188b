import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, RetryableError, ValidationError } from "../../../lib/util/errors.js";
import { BudgetExhaustedError, createQueryBudget, createQueryClient, engageForm, quoteUnsafeDistinctIds } from "../../../lib/mixpanel/query.js";
import { type CohortQueryApi, createCohortQueryApi } from "../../../infra/local/peers/mixpanel-query.js";

const CREDS = { projectId: "99", username: "sa", secret: "pw" };

describe("Mixpanel Query API reader", () => {
  let server: Server;
  let api: CohortQueryApi;
  let base: string;
  const sleeps: number[] = [];
  let now = 1_700_000_000_000;
  const profiles = new Map<string, Record<string, unknown>>();

  beforeEach(async () => {
    sleeps.length = 0;
    profiles.clear();
    for (let i = 0; i < 5; i++) profiles.set(String(i), { $email: `${i}@x`, secret_prop: "never asked" });
    api = createCohortQueryApi({ profiles: () => profiles, cohorts: [{ id: 1, name: "All", where: () => true }], ...CREDS, pageSize: 2, queriesPerHour: 4, now: () => now });
    server = createServer((req, res) => void api.handle(req, res, new URL(req.url ?? "/", "http://x")));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/query`;
  });
  afterEach(() => new Promise<void>((r) => server.close(() => r())));

  const client = (calls = 10, creds = CREDS) =>
    createQueryClient({
      baseUrl: base,
      credentials: creds,
      fetch,
      timeoutMs: 2000,
      retryDeps: { sleep: async (ms) => void sleeps.push(ms), random: () => 0, remainingMs: () => 600_000 },
      budget: createQueryBudget(calls, 5),
      now: () => now,
    });

  it("builds the documented form: filter_by_cohort JSON, output_properties JSON, session_id + page only when paging", () => {
    expect(Object.fromEntries(engageForm({ cohortId: 7, outputProperties: ["$email"], includeAllUsers: false, page: 0 }))).toEqual({
      filter_by_cohort: '{"id":7}',
      output_properties: '["$email"]',
      include_all_users: "false",
    });
    expect(engageForm({ cohortId: 7, outputProperties: [], includeAllUsers: true, sessionId: "s1", page: 3 }).get("page")).toBe("3");
  });

  it("pages with session_id, normalises ids to strings, only the requested properties come back", async () => {
    const c = client();
    const p0 = await c.engagePage({ cohortId: 1, outputProperties: ["$email"], includeAllUsers: true, page: 0 });
    expect(p0.total).toBe(5);
    expect(p0.results[0]).toEqual({ $distinct_id: "0", $properties: { $email: "0@x" } });
    const p1 = await c.engagePage({ cohortId: 1, outputProperties: ["$email"], includeAllUsers: true, sessionId: p0.session_id ?? "", page: 1 });
    expect(p1.results.map((r) => r.$distinct_id)).toEqual(["2", "3"]);
    expect(api.queries.every((q) => q.status === 200)).toBe(true);
  });

  it("backs off on 429 honouring Retry-After, and each attempt spends budget", async () => {
    api.failNext({ status: 429, body: "{}", headers: { "retry-after": "30" } });
    const cohorts = await client().listCohorts();
    expect(cohorts[0]).toMatchObject({ id: 1, name: "All", count: 5 });
    expect(sleeps).toEqual([31_000]);
    const poor = client(1);
    api.failNext({ status: 429, body: "{}" });
    await expect(poor.listCohorts()).rejects.toBeInstanceOf(BudgetExhaustedError);
  });

  it("answers 429 past the hourly budget and gives up after the retry policy", async () => {
    const c = client(10);
    for (let i = 0; i < 2; i++) await c.listCohorts(); // 4 left in the server's hour minus earlier ones
    await expect(c.listCohorts().then(() => c.listCohorts()).then(() => c.listCohorts())).rejects.toBeInstanceOf(RetryableError);
    expect(api.queries.filter((q) => q.status === 429).length).toBeGreaterThan(0);
  });

  it("wrong credentials are a ConfigError (no retry)", async () => {
    await expect(client(10, { ...CREDS, secret: "nope" }).listCohorts()).rejects.toBeInstanceOf(ConfigError);
    expect(sleeps).toEqual([]);
  });
});

describe("numeric $distinct_id beyond 2^53", () => {
  const ids = ["12345678901234567891", "9007199254740993", "-9007199254740993", "42", "u1"];
  let server: Server;
  let api: CohortQueryApi;
  let base: string;

  beforeEach(async () => {
    const profiles = new Map(ids.map((id) => [id, { $email: `${id}@x` }]));
    api = createCohortQueryApi({ profiles: () => profiles, cohorts: [{ id: 1, name: "All", where: () => true }], ...CREDS, numericIds: true });
    server = createServer((req, res) => void api.handle(req, res, new URL(req.url ?? "/", "http://x")));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/query`;
  });
  afterEach(() => new Promise<void>((r) => server.close(() => r())));

  const client = () =>
    createQueryClient({
      baseUrl: base,
      credentials: CREDS,
      fetch,
      timeoutMs: 2000,
      retryDeps: { sleep: async () => {}, random: () => 0, remainingMs: () => 600_000 },
      budget: createQueryBudget(10, 5),
      now: Date.now,
    });

  it("reads every id exactly, digits as sent (JSON.parse alone would turn them into other ids)", async () => {
    const page = await client().engagePage({ cohortId: 1, outputProperties: ["$email"], includeAllUsers: true, page: 0 });
    expect(page.results.map((r) => r.$distinct_id).sort()).toEqual([...ids].sort());
    expect(page.results.find((r) => r.$distinct_id === "12345678901234567891")?.$properties).toEqual({ $email: "12345678901234567891@x" });
  });

  it("fails the page loudly when a numeric id cannot be read exactly", async () => {
    api.failNext({ status: 200, body: '{"page":0,"page_size":1000,"session_id":"s","status":"ok","results":[{"$distinct_id":1e21,"$properties":{}}]}' });
    const error = await client().engagePage({ cohortId: 1, outputProperties: [], includeAllUsers: true, page: 0 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect(String(error)).toMatch(/\$distinct_id.*not a safe integer/);
  });

  it("quotes only unsafe integer ids in key position, never string contents", () => {
    const body = '{"results":[{"$distinct_id": 12345678901234567891 ,"$properties":{"note":"{\\"$distinct_id\\":12345678901234567891}"}},{"$distinct_id":7}]}';
    const quoted = quoteUnsafeDistinctIds(body);
    expect(JSON.parse(quoted)).toEqual({
      results: [{ $distinct_id: "12345678901234567891", $properties: { note: '{"$distinct_id":12345678901234567891}' } }, { $distinct_id: 7 }],
    });
  });
});
