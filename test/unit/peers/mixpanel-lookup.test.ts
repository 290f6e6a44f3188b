import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MixpanelSandbox } from "../../../infra/local/peers/mixpanel-server.js";
import { createLookupTablesApi, type LookupTablesApi } from "../../../infra/local/peers/mixpanel-lookup.js";

/** The local Lookup Tables API answers as Mixpanel documents (https://docs.mixpanel.com/reference/replace-lookup-table). */
const auth = `Basic ${Buffer.from("sa:secret").toString("base64")}`;
let api: LookupTablesApi;
let sandbox: MixpanelSandbox;
let base = "";
let clock = 0;

beforeAll(async () => {
  api = createLookupTablesApi({ projectId: "9", username: "sa", secret: "secret", tables: [{ id: "t1", name: "Products" }], now: () => clock });
  sandbox = new MixpanelSandbox({ credentials: { projectId: "9", projectToken: "x", serviceAccountUsername: "sa", serviceAccountSecret: "secret" }, host: "127.0.0.1", port: 0, extraRoutes: [api] });
  base = await sandbox.start();
});
afterAll(() => sandbox.stop());

const put = (body: string | Buffer, headers: Record<string, string> = {}, table = "t1") =>
  fetch(`${base}/lookup-tables/${table}?project_id=9`, { method: "PUT", headers: { authorization: auth, "content-type": "text/csv", ...headers }, body: typeof body === "string" ? body : new Uint8Array(body) });

describe("local Mixpanel lookup tables", () => {
  it("replaces all or nothing, with failed_records for bad rows (0-based data-row index)", async () => {
    expect((await put(gzipSync("sku,name\nA,1\nB,2\n"), { "content-encoding": "gzip" })).status).toBe(200);
    const refused = await put("sku,name\nA,1\nA,2\n,3\n");
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { failed_records: unknown[] }).failed_records).toEqual([
      { index: 1, message: "duplicate primary key A" },
      { index: 2, message: "empty or falsy primary key" },
    ]);
    expect(api.tables.get("t1")?.rows).toEqual([
      ["A", "1"],
      ["B", "2"],
    ]);
    expect((await put("sku,sku\nA,1\n")).status).toBe(400);
    expect((await put("sku\nA\n")).status).toBe(400);
  });

  it("answers 401 without the service account, 404 for an unknown table, and lists tables", async () => {
    expect((await fetch(`${base}/lookup-tables?project_id=9`)).status).toBe(401);
    expect((await put("sku,name\nA,1\n", {}, "nope")).status).toBe(404);
    const listed = await fetch(`${base}/lookup-tables?project_id=9`, { headers: { authorization: auth } });
    expect(await listed.json()).toEqual({ code: 200, status: "OK", results: [{ id: "t1", name: "Products" }] });
  });

  it("answers 429 after 100 replace calls in 24 hours, refused ones included", async () => {
    clock = 1_000_000;
    const before = api.replaceCount();
    for (let i = before; i < 100; i++) await put("sku,name\nA,1\n");
    expect((await put("sku,name\nA,1\n")).status).toBe(429);
    clock += 86_400_000;
    expect((await put("sku,name\nA,1\n")).status).toBe(200);
  });
});
