import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { MixpanelSandbox } from "../../infra/local/peers/mixpanel-server.js";
import { createLookupTablesApi, type LookupTablesApi } from "../../infra/local/peers/mixpanel-lookup.js";
import { lookupTablesSchema, type LookupTable } from "../../lib/config/lookup-tables.js";
import { createLookupTablesClient } from "../../lib/lookup/client.js";
import { LookupCsvError, checkLookupCsv } from "../../lib/lookup/csv-check.js";
import { DAY_MS, type LookupRefreshDeps, refreshDueLookupTables, refreshLookupTable, refreshUploadedLookupTables } from "../../lib/lookup/refresh.js";
import type { LookupState, LookupStore } from "../../lib/lookup/store.js";
import { uploadedObjects } from "../../lib/lookup/uploads.js";

/**
 * Lookup tables end to end against the local Mixpanel's Lookup Tables API: a file is checked
 * before any call (and the refusal names the row and column), an unchanged file makes no call,
 * a changed one replaces the table, and the 24-hour replace budget holds.
 */
const CREDENTIALS = { projectId: "7", username: "sa.lookup", secret: "sa-secret" };
const TABLE_ID = "3f6a0c1e-lookup";
const credentials = { projectId: CREDENTIALS.projectId, projectToken: "t", serviceAccountUsername: CREDENTIALS.username, serviceAccountSecret: CREDENTIALS.secret };

let api: LookupTablesApi;
let sandbox: MixpanelSandbox;
let baseUrl = "";

beforeAll(async () => {
  api = createLookupTablesApi({ ...CREDENTIALS, tables: [{ id: TABLE_ID, name: "Products" }] });
  sandbox = new MixpanelSandbox({ credentials, host: "127.0.0.1", port: 0, extraRoutes: [api] });
  baseUrl = await sandbox.start();
});
afterAll(async () => {
  await sandbox.stop();
});

function memoryStore(): LookupStore & { states: Map<string, LookupState>; replaces: number[] } {
  const states = new Map<string, LookupState>();
  const store = {
    states,
    replaces: [] as number[],
    readState: async (id: string) => ({ ...(states.get(id) ?? {}) }),
    writeState: async (id: string, state: LookupState) => void states.set(id, JSON.parse(JSON.stringify(state)) as LookupState),
    readReplaces: async () => [...store.replaces],
    writeReplaces: async (calls: readonly number[]) => void (store.replaces = [...calls]),
  };
  return store;
}

const table: LookupTable = lookupTablesSchema.parse([
  { id: "products", table_id: TABLE_ID, source: { type: "s3", bucket: "acme-catalog", key: "catalog/products.csv" }, schedule: "rate(1 day)" },
])[0] as LookupTable;

function harness(files: { current: Uint8Array }, options: { replacesPerDay?: number; clock?: { now: number } } = {}) {
  const store = memoryStore();
  const clock = options.clock ?? { now: Date.parse("2026-03-01T00:00:00Z") };
  const logs: string[] = [];
  const deps: LookupRefreshDeps = {
    store,
    openSource: async () => [files.current],
    client: async () => createLookupTablesClient({ baseUrl, credentials: CREDENTIALS, fetch: globalThis.fetch, timeoutMs: 5_000, now: () => clock.now }),
    now: () => clock.now,
    replacesPerDay: options.replacesPerDay ?? 100,
    log: { info: (m) => logs.push(m), warn: (m) => logs.push(m), error: (m) => logs.push(m) },
    metric: () => undefined,
  };
  return { deps, store, clock, logs };
}

const replaceCalls = () => api.calls.filter((call) => call.method === "PUT").length;
let callsBefore = 0;
beforeEach(() => {
  callsBefore = replaceCalls();
});

describe("lookup CSV checks before any call", () => {
  it("refuses a duplicate header naming row 1 and the column, and makes no call", async () => {
    const { deps, store } = harness({ current: Buffer.from("sku,name,name\nA1,Hat,Red\n") });
    const report = await refreshLookupTable(table, deps);
    expect(report.outcome).toBe("refused");
    expect(report.detail).toMatch(/row 1, column 3 "name": repeats the header of column 2/);
    expect(replaceCalls()).toBe(callsBefore);
    expect(store.replaces).toEqual([]);
  });

  it("refuses a duplicate key naming both rows and the key column, and makes no call", async () => {
    const { deps } = harness({ current: gzipSync("sku,name\nA1,Hat\nB2,Scarf\nA1,Glove\n") });
    const report = await refreshLookupTable(table, deps);
    expect(report.outcome).toBe("refused");
    expect(report.detail).toMatch(/row 4, column 1 "sku": key "A1" repeats row 2/);
    expect(replaceCalls()).toBe(callsBefore);
  });

  it("names the row of an empty key, a short row and an unclosed quote", async () => {
    const refusal = async (text: string) => {
      try {
        await checkLookupCsv([Buffer.from(text)]);
      } catch (error) {
        if (error instanceof LookupCsvError) return { row: error.row, message: error.message };
        throw error;
      }
      return undefined;
    };
    expect(await refusal("sku,name\nA1,Hat\n,Scarf\n")).toMatchObject({ row: 3, message: expect.stringMatching(/column 1 "sku": empty key/) });
    expect(await refusal("sku,name\nA1,Hat\nB2\n")).toMatchObject({ row: 3 });
    expect(await refusal('sku,name\nA1,"Hat\n')).toMatchObject({ row: 2 });
    expect(await refusal("sku\nA1\n")).toMatchObject({ row: 1, message: expect.stringMatching(/at least 2 columns/) });
  });

  it("refuses files past the byte and row caps, naming the row", async () => {
    const rows = Array.from({ length: 20 }, (_, i) => `k${i},v${i}`).join("\n");
    await expect(checkLookupCsv([Buffer.from(`sku,name\n${rows}\n`)], { maxBytes: 1_000_000, maxRows: 10 })).rejects.toThrow(/row 12: more than 10 data rows/);
    await expect(checkLookupCsv([Buffer.from(`sku,name\n${rows}\n`)], { maxBytes: 50, maxRows: 100 })).rejects.toThrow(/passes 50 bytes uncompressed/);
  });
});

describe("lookup table replace through the sandbox", () => {
  it("replaces a changed file, then makes no call while it is unchanged (even re-gzipped)", async () => {
    const files = { current: Buffer.from("sku,name,price\nA1,Hat,10\nB2,Scarf,12\n") as Uint8Array };
    const { deps, store } = harness(files);
    expect((await refreshLookupTable(table, deps)).outcome).toBe("replaced");
    expect(api.tables.get(TABLE_ID)?.rows).toEqual([
      ["A1", "Hat", "10"],
      ["B2", "Scarf", "12"],
    ]);
    expect(replaceCalls()).toBe(callsBefore + 1);

    files.current = gzipSync(files.current);
    expect((await refreshLookupTable(table, deps)).outcome).toBe("unchanged");
    expect(replaceCalls()).toBe(callsBefore + 1);

    files.current = Buffer.from("sku,name,price\nA1,Hat,11\nB2,Scarf,12\nC3,Glove,8\n");
    expect((await refreshLookupTable(table, deps)).outcome).toBe("replaced");
    expect(api.tables.get(TABLE_ID)?.rows?.map((row) => row[0])).toEqual(["A1", "B2", "C3"]);
    expect(replaceCalls()).toBe(callsBefore + 2);
    expect(store.replaces).toHaveLength(2);
  });

  it("keeps within the replace budget across runs, and frees it after 24 hours", async () => {
    const files = { current: Buffer.from("sku,name\nA1,v0\n") as Uint8Array };
    const { deps, clock, store } = harness(files, { replacesPerDay: 2 });
    const outcomes: string[] = [];
    for (let run = 1; run <= 3; run++) {
      files.current = Buffer.from(`sku,name\nA1,v${run}\n`);
      clock.now += 3_600_000;
      outcomes.push((await refreshLookupTable(table, deps)).outcome);
    }
    expect(outcomes).toEqual(["replaced", "replaced", "budget_spent"]);
    expect(replaceCalls()).toBe(callsBefore + 2);
    expect(store.states.get("products")?.last_outcome).toBe("budget_spent");
    clock.now += DAY_MS;
    expect((await refreshLookupTable(table, deps)).outcome).toBe("replaced");
    expect(replaceCalls()).toBe(callsBefore + 3);
  });

  it("a dry run checks the file and makes no call", async () => {
    const { deps, store } = harness({ current: Buffer.from("sku,name\nZ9,New\n") });
    expect((await refreshLookupTable(table, deps, { dryRun: true })).outcome).toBe("checked");
    expect(replaceCalls()).toBe(callsBefore);
    expect(store.states.size).toBe(0);
  });

  it("reports Mixpanel's own refusal (unknown table id) as failed without throwing", async () => {
    const { deps } = harness({ current: Buffer.from("sku,name\nQ1,x\n") });
    const report = await refreshLookupTable({ ...table, table_id: "no-such-table" }, deps);
    expect(report.outcome).toBe("failed");
    expect(report.detail).toMatch(/no lookup table with this id/);
  });

  it("lists the project's tables", async () => {
    const client = createLookupTablesClient({ baseUrl, credentials: CREDENTIALS, fetch: globalThis.fetch, timeoutMs: 5_000, now: Date.now });
    expect(await client.list()).toEqual([{ id: TABLE_ID, name: "Products" }]);
    const wrong = createLookupTablesClient({ baseUrl, credentials: { ...CREDENTIALS, secret: "nope" }, fetch: globalThis.fetch, timeoutMs: 5_000, now: Date.now });
    await expect(wrong.list()).rejects.toThrow();
  });
});

describe("when a lookup table runs", () => {
  it("a scheduled table runs once per interval; an on_upload table only for its own object", async () => {
    const files = { current: Buffer.from("sku,name\nA1,Hat\n") as Uint8Array };
    const { deps, clock } = harness(files);
    const uploadTable: LookupTable = { ...table, id: "uploaded", schedule: "on_upload" };
    const first = await refreshDueLookupTables([table, uploadTable], deps, 900_000);
    expect(first.products?.outcome).toMatch(/replaced|unchanged/);
    expect(first.uploaded).toBeUndefined();
    clock.now += 3_600_000;
    expect((await refreshDueLookupTables([table], deps, 900_000)).products?.outcome).toBe("not_due");
    clock.now += DAY_MS;
    expect((await refreshDueLookupTables([table], deps, 900_000)).products?.outcome).not.toBe("not_due");

    const event = { Records: [{ eventSource: "aws:s3", eventName: "ObjectCreated:Put", s3: { bucket: { name: "acme-catalog" }, object: { key: "catalog/products.csv" } } }] };
    const uploads = uploadedObjects(event) ?? [];
    expect(Object.keys(await refreshUploadedLookupTables([table, uploadTable], uploads, deps))).toEqual(["uploaded"]);
    const other = uploadedObjects({ Records: [{ ...event.Records[0], s3: { bucket: { name: "acme-catalog" }, object: { key: "catalog/other.csv" } } }] }) ?? [];
    expect(await refreshUploadedLookupTables([uploadTable], other, deps)).toEqual({});
    expect(uploadedObjects({ force: ["x"] })).toBeUndefined();
  });
});
