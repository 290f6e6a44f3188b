import { readFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOCAL_LOOKUP_TABLE, type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { eventually } from "../support/eventually.js";

/**
 * An `on_upload` lookup table on the local stack: a CSV written to its source bucket reaches the
 * sandbox's Lookup Tables API through the S3 trigger (infra/local/s3-notifier.ts → cohort-export),
 * as S3 event notifications do in AWS; an object under another key triggers nothing.
 */
const ROOT = resolve(import.meta.dirname, "../..");
const BUCKET = "local-catalog-uploads";
let stack: LocalStack;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "relay-lookup-upload-"));
  const config = JSON.parse(readFileSync(join(ROOT, "config/local.json"), "utf8")) as Record<string, unknown>;
  const configFile = join(dir, "local.json");
  writeFileSync(
    configFile,
    JSON.stringify({
      ...config,
      lookup_tables: [{ id: "products", table_id: LOCAL_LOOKUP_TABLE.id, source: { type: "s3", bucket: BUCKET, key: "catalog/products.csv" }, schedule: "on_upload" }],
    }),
  );
  stack = await startLocalStack({ configFile, cohorts: { tickMs: 3_600_000 } });
}, 60_000);
afterAll(async () => {
  await stack.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("local stack: on_upload lookup tables", () => {
  it("replaces the table when its CSV is written, and ignores other keys of the bucket", async () => {
    expect(stack.lookupNotifiers).toHaveLength(1);
    const table = () => stack.lookupApi?.tables.get(LOCAL_LOOKUP_TABLE.id);
    await stack.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "catalog/other.csv", Body: "sku,name\nx,Other\n" }));
    await stack.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "catalog/products.csv", Body: "sku,name,price\na-1,Lamp,12\nb-2,Desk,140\n" }));
    await eventually(() => (table()?.rows?.length === 2 ? true : undefined), 30_000);
    // Only the configured key made a replace call; the other object was notified and left alone.
    await new Promise((done) => setTimeout(done, 1_500));
    expect(stack.lookupApi?.replaceCount()).toBe(1);
    expect(table()?.header).toEqual(["sku", "name", "price"]);
    expect(table()?.rows).toEqual([
      ["a-1", "Lamp", "12"],
      ["b-2", "Desk", "140"],
    ]);
  }, 60_000);
});
