import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../lib/util/errors.js";
import { parseStageConfig } from "../../../lib/config/stage.js";

const entry = { id: "products", table_id: "3f6a0c1e", source: { type: "s3", bucket: "acme-catalog", key: "catalog/products.csv" }, schedule: "rate(1 day)" };
const refusal = (lookup_tables: unknown) => {
  try {
    parseStageConfig({ lookup_tables }, "config/test.json");
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  return "accepted";
};

describe("stage config lookup_tables", () => {
  it("accepts a scheduled and an on_upload table, and defaults to none", () => {
    expect(parseStageConfig({}, "x").lookup_tables).toEqual([]);
    expect(parseStageConfig({ lookup_tables: [entry, { ...entry, id: "stores", table_id: "77", schedule: "on_upload" }] }, "x").lookup_tables).toHaveLength(2);
  });

  it("names the key of each mistake", () => {
    expect(refusal([{ ...entry, schedule: "rate(10 minutes)" }])).toMatch(/lookup_tables\.0\.schedule/);
    expect(refusal([{ ...entry, source: { ...entry.source, key: "catalog/*.csv" } }])).toMatch(/lookup_tables\.0\.source\.key/);
    expect(refusal([{ ...entry, source: { ...entry.source, bucket: "Not_A_Bucket" } }])).toMatch(/lookup_tables\.0\.source\.bucket/);
    expect(refusal([entry, { ...entry, table_id: "other" }])).toMatch(/lookup_tables\.1\.id: repeats the id of lookup_tables\.0/);
    expect(refusal([entry, { ...entry, id: "other" }])).toMatch(/lookup_tables\.1\.table_id/);
    expect(refusal([{ ...entry, extra: 1 }])).toMatch(/lookup_tables\.0/);
  });
});
