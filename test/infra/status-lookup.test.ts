import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOCAL_REGION, type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { collectStatus, renderStatus } from "../../infra/status.js";
import { snapshotBucketPrefix } from "../../infra/stack-layout.js";
import { findStageBucket } from "../../infra/replay-rejected.js";
import { createLookupStore } from "../../lib/lookup/store.js";

/** `npm run status` shows each lookup table's last check, read from the state the sync writes. */
let stack: LocalStack;
let dir: string;

beforeAll(async () => {
  stack = await startLocalStack({ startPollers: false });
  dir = mkdtempSync(join(tmpdir(), "relay-status-lookup-"));
}, 60_000);
afterAll(async () => {
  await stack.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("npm run status: lookup tables", () => {
  it("lists each configured table with its last outcome, never checked ones as never", async () => {
    const configPath = join(dir, "local.json");
    const source = (key: string) => ({ type: "s3", bucket: "catalog-bucket", key });
    writeFileSync(
      configPath,
      JSON.stringify({
        lookup_tables: [
          { id: "products", table_id: "tbl-products", source: source("catalog/products.csv"), schedule: "rate(1 day)" },
          { id: "stores", table_id: "tbl-stores", source: source("catalog/stores.csv"), schedule: "on_upload" },
        ],
      }),
    );
    const store = createLookupStore(stack.s3, await findStageBucket(stack.s3, snapshotBucketPrefix("local")));
    await store.writeState("products", { checked_at: "2026-03-01T06:00:00.000Z", last_outcome: "replaced", replaced_at: "2026-03-01T06:00:00.000Z", replaced_rows: 1200 });
    const report = await collectStatus({ target: { stage: "local", region: LOCAL_REGION, endpoint: stack.awsEndpoint, local: true }, sqs: stack.sqs, s3: stack.s3, now: () => new Date(), configPath });
    expect(report.lookupTables).toEqual([
      { id: "products", tableId: "tbl-products", schedule: "rate(1 day)", checkedAt: "2026-03-01T06:00:00.000Z", lastOutcome: "replaced", replacedAt: "2026-03-01T06:00:00.000Z", replacedRows: 1200 },
      { id: "stores", tableId: "tbl-stores", schedule: "on_upload" },
    ]);
    const screen = renderStatus(report);
    expect(screen).toContain("Lookup tables (last check)");
    expect(screen).toMatch(/^products +tbl-products +rate\(1 day\) +2026-03-01T06:00:00.000Z +replaced +2026-03-01T06:00:00.000Z +1200$/m);
    expect(screen).toMatch(/^stores +tbl-stores +on_upload +never +- +never +-$/m);
  });
});
