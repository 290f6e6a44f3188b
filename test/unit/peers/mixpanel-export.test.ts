import { createServer, type Server } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { closeServer, listenOnLoopback } from "../../../infra/local/peers/local-server.js";
import { createExportApi, type ExportApiOptions, type ExportedSandboxEvent } from "../../../infra/local/peers/mixpanel-export.js";

/** The local raw event export against Mixpanel's published contract, spoken to with plain fetch. */
const DAY1 = Date.UTC(2026, 2, 1);
const DAY_MS = 86_400_000;
const basic = (user: string, secret: string) => `Basic ${Buffer.from(`${user}:${secret}`).toString("base64")}`;
const AUTH = basic("sa", "s3cret");

let server: Server | undefined;
afterEach(async () => {
  await closeServer(server);
  server = undefined;
});

async function start(events: ExportedSandboxEvent[], options: Partial<ExportApiOptions> = {}): Promise<string> {
  const api = createExportApi({ events: () => events, projectId: "7", username: "sa", secret: "s3cret", ...options });
  server = createServer((request, response) => {
    void api.handle(request, response, new URL(request.url ?? "/", "http://x")).then((handled) => {
      if (!handled) response.writeHead(404).end();
    });
  });
  return `http://127.0.0.1:${await listenOnLoopback(server, 0, "127.0.0.1")}/api/2.0/export`;
}

const get = (url: string, query: Record<string, string>, authorization = AUTH) => fetch(`${url}?${new URLSearchParams(query)}`, { headers: { authorization } });
const lines = async (response: Response) => (await response.text()).split("\n").filter((line) => line !== "").map((line) => JSON.parse(line) as { event: string; properties: Record<string, unknown> });

const events: ExportedSandboxEvent[] = [
  { event: "Purchase", properties: { distinct_id: "a", time: DAY1 + 5_000, $insert_id: "p1" } },
  { event: "Viewed", properties: { distinct_id: "a", time: DAY1 + DAY_MS - 1, $insert_id: "v1" } },
  { event: "Purchase", properties: { distinct_id: "b", time: DAY1 + DAY_MS, $insert_id: "p2" } },
];

describe("local Mixpanel raw export", () => {
  it("answers the days asked, inclusive and UTC, one JSON event per line, times in s unless time_in_ms", async () => {
    const url = await start(events);
    const day1 = await get(url, { project_id: "7", from_date: "2026-03-01", to_date: "2026-03-01" });
    expect(day1.status).toBe(200);
    expect(day1.headers.get("content-type")).toMatch(/text\/plain/);
    const first = await lines(day1);
    expect(first.map((event) => event.properties.$insert_id)).toEqual(["p1", "v1"]);
    expect(first[0]?.properties.time).toBe(Math.floor((DAY1 + 5_000) / 1000));
    expect(first[0]?.properties.mp_processing_time_ms).toEqual(expect.any(Number));
    const both = await lines(await get(url, { project_id: "7", from_date: "2026-03-01", to_date: "2026-03-02", time_in_ms: "true" }));
    expect(both.map((event) => event.properties.time)).toEqual([DAY1 + 5_000, DAY1 + DAY_MS - 1, DAY1 + DAY_MS]);
  });

  it("filters by the event parameter, a JSON array, and honours limit", async () => {
    const url = await start(events, { requestsPerSecond: 10 });
    const purchases = await lines(await get(url, { project_id: "7", from_date: "2026-03-01", to_date: "2026-03-02", event: '["Purchase"]' }));
    expect(purchases.map((event) => event.properties.$insert_id)).toEqual(["p1", "p2"]);
    expect(await lines(await get(url, { project_id: "7", from_date: "2026-03-01", to_date: "2026-03-02", limit: "1" }))).toHaveLength(1);
    expect((await get(url, { project_id: "7", from_date: "2026-03-01", to_date: "2026-03-02", event: "Purchase" })).status).toBe(400);
    expect((await get(url, { project_id: "7", from_date: "2026-03-01", to_date: "2026-03-02", limit: "100001" })).status).toBe(400);
  });

  it("refuses other credentials, a service account without its project_id, and bad dates", async () => {
    const url = await start(events, { requestsPerSecond: 10 });
    expect((await get(url, { project_id: "7", from_date: "2026-03-01", to_date: "2026-03-01" }, basic("sa", "wrong"))).status).toBe(401);
    expect((await get(url, { from_date: "2026-03-01", to_date: "2026-03-01" })).status).toBe(401);
    expect((await get(url, { project_id: "7", from_date: "2026-02-30", to_date: "2026-03-01" })).status).toBe(400);
    expect((await get(url, { project_id: "7", from_date: "2026-03-02", to_date: "2026-03-01" })).status).toBe(400);
    expect((await get(url, { project_id: "7", to_date: "2026-03-01" })).status).toBe(400);
    expect((await fetch(`${url}?project_id=7`, { method: "POST", headers: { authorization: AUTH } })).status).toBe(405);
  });

  it("answers 429 past the hour's requests and past three in one second", async () => {
    let clock = DAY1;
    const url = await start(events, { requestsPerHour: 4, now: () => clock });
    const ask = () => get(url, { project_id: "7", from_date: "2026-03-01", to_date: "2026-03-01" });
    for (let i = 0; i < 3; i++) expect((await ask()).status).toBe(200);
    const tooFast = await ask();
    expect(tooFast.status).toBe(429);
    expect(tooFast.headers.get("retry-after")).toBe("1");
    clock += 1_000;
    expect((await ask()).status).toBe(200);
    clock += 1_000;
    const refused = await ask();
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe(String(3_600 - 2));
    clock += 3_600_000;
    expect((await ask()).status).toBe(200);
  });
});
