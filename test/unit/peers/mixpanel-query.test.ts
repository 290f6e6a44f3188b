import { createServer, type Server } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { type CohortQueryApi, createCohortQueryApi } from "../../../infra/local/peers/mixpanel-query.js";
import { closeServer, listenOnLoopback } from "../../../infra/local/peers/local-server.js";

/** The local Query API against Mixpanel's published cohort export contract (docs/vendors/mixpanel-api.md §8). */
let server: Server | undefined;
afterEach(async () => {
  await closeServer(server);
  server = undefined;
});

async function start(options: Partial<Parameters<typeof createCohortQueryApi>[0]> = {}): Promise<{ url: string; api: CohortQueryApi }> {
  const profiles = new Map<string, Record<string, unknown>>(
    Array.from({ length: 5 }, (_, i) => [`u${i}`, { plan: i < 4 ? "pro" : "free", $email: `u${i}@x.io` }]),
  );
  const api = createCohortQueryApi({
    profiles: () => profiles,
    cohorts: [{ id: 1, name: "Pro", where: (p) => p.plan === "pro", distinctIds: ["ghost"] }],
    projectId: "7",
    username: "sa",
    secret: "pw",
    pageSize: 2,
    ...options,
  });
  server = createServer((request, response) => {
    void api.handle(request, response, new URL(request.url ?? "/", "http://x")).then((handled) => {
      if (!handled) {
        response.writeHead(404);
        response.end();
      }
    });
  });
  const port = await listenOnLoopback(server);
  return { url: `http://127.0.0.1:${port}/api/query`, api };
}

const auth = `Basic ${Buffer.from("sa:pw").toString("base64")}`;
const engage = (url: string, form: Record<string, string>, headers: Record<string, string> = {}) =>
  fetch(`${url}/engage?project_id=7`, {
    method: "POST",
    headers: { authorization: auth, "content-type": "application/x-www-form-urlencoded", ...headers },
    body: new URLSearchParams(form).toString(),
  });

describe("local Mixpanel Query API", () => {
  it("pages a cohort with session_id and 0-based pages; total only on page 0; include_all_users adds ids without a profile", async () => {
    const { url } = await start();
    const form = { filter_by_cohort: JSON.stringify({ id: 1 }), output_properties: JSON.stringify(["$email"]) };
    const first = (await (await engage(url, form)).json()) as { page: number; session_id: string; total?: number; results: { $distinct_id: string; $properties: Record<string, unknown> }[] };
    expect(first.page).toBe(0);
    expect(first.total).toBe(5);
    expect(first.results.find((r) => r.$distinct_id === "u0")?.$properties).toEqual({ $email: "u0@x.io" });
    const ids = first.results.map((r) => r.$distinct_id);
    for (let page = 1; page < 3; page++) {
      const next = (await (await engage(url, { ...form, session_id: first.session_id, page: String(page) })).json()) as typeof first;
      expect(next.total).toBeUndefined();
      ids.push(...next.results.map((r) => r.$distinct_id));
    }
    expect(ids.sort()).toEqual(["ghost", "u0", "u1", "u2", "u3"]);
    const withoutGhost = (await (await engage(url, { ...form, include_all_users: "false" })).json()) as typeof first;
    expect(withoutGhost.total).toBe(4);
  });

  it("refuses a wrong service account (401), a missing project_id (401), a JSON body (415) and changed parameters on a paged call (400)", async () => {
    const { url } = await start();
    const form = { filter_by_cohort: JSON.stringify({ id: 1 }) };
    expect((await engage(url, form, { authorization: "Basic eDp5" })).status).toBe(401);
    const noProject = await fetch(`${url}/engage`, { method: "POST", headers: { authorization: auth, "content-type": "application/x-www-form-urlencoded" }, body: "" });
    expect(noProject.status).toBe(401);
    expect((await engage(url, form, { "content-type": "application/json" })).status).toBe(415);
    const first = (await (await engage(url, form)).json()) as { session_id: string };
    expect((await engage(url, { filter_by_cohort: JSON.stringify({ id: 1 }), output_properties: '["plan"]', session_id: first.session_id, page: "1" })).status).toBe(400);
  });

  it("answers 429 past 60 queries in the rolling hour, then again once the hour has passed", async () => {
    let now = 1_000_000;
    const { url } = await start({ queriesPerHour: 3, now: () => now });
    const list = () => fetch(`${url}/cohorts/list?project_id=7`, { method: "POST", headers: { authorization: auth } });
    expect([(await list()).status, (await list()).status, (await list()).status, (await list()).status]).toEqual([200, 200, 200, 429]);
    now += 3_600_000;
    const listed = await list();
    expect(listed.status).toBe(200);
    expect(await listed.json()).toEqual([expect.objectContaining({ id: 1, name: "Pro", count: 5, project_id: 7 })]);
  });

  it("answers hostile forms with a 4xx JSON body", async () => {
    const { url } = await start();
    const forms: Record<string, string>[] = [{ where: 'properties["plan"' }, { where: 'properties["plan"] ~ "x"' }, { filter_by_cohort: "{" }, { filter_by_cohort: '{"id":"1"}' }, { filter_by_cohort: '{"id":99}' }, { filter_by_cohort: '{"id":1}', output_properties: "[1]" }, { filter_by_cohort: '{"id":1}', page: "3" }];
    for (const form of forms) {
      const response = await engage(url, form);
      expect(response.status, JSON.stringify(form)).toBe(400);
      expect(await response.json()).toHaveProperty("error");
    }
    // Without a cohort or `where`, the Engage query matches every profile (Mixpanel's `where` is optional).
    expect((await engage(url, {})).status).toBe(200);
  });
});

describe("local Mixpanel Query API: where subset", () => {
  it("evaluates the documented operators and refuses anything else", async () => {
    const { evaluateWhere } = await import("../../../infra/local/peers/mixpanel-query.js");
    const props = { plan: "pro", seats: 5, beta: true };
    expect(evaluateWhere('properties["plan"] == "pro" and properties["seats"] >= 5', props)).toBe(true);
    expect(evaluateWhere('properties["plan"] != "pro" or not defined(properties["missing"])', props)).toBe(true);
    expect(evaluateWhere('(properties["seats"] < 3) or properties["beta"] == false', props)).toBe(false);
    expect(evaluateWhere('properties["seats"] > "4"', props)).toBe(false); // different types never compare
    expect(() => evaluateWhere('properties["plan"] in ["pro"]', props)).toThrow();
    expect(() => evaluateWhere('"a\\nb" == "x"', props)).toThrow(/escape/);
  });
});
