import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { filteredOut, tabularRecord } from "../../../lib/import/map-rows.js";
import { parquetWriteBuffer } from "hyparquet-writer";
import { type FileRef, ImportFileError, formatFromName, parquetReads, readRows } from "../../../lib/import/read-rows.js";
import { avroFile, currentsKey, schemaFor } from "../sources/avro-support.js";

const streamOf = (path: string, bytes: Buffer): FileRef => ({ kind: "stream", path, open: async () => Readable.from([bytes]) });

async function rows(ref: FileRef, format: Parameters<typeof readRows>[1]["format"]) {
  const out: unknown[] = [];
  for await (const row of readRows(ref, { format })) out.push(row);
  return out;
}

describe("readRows", () => {
  it("gunzips by magic bytes when the name does not say .gz", async () => {
    const ref = streamOf("piped.ndjson", gzipSync('{"a":1}\n\n{"a":2}\nnot json\n'));
    expect(await rows(ref, "ndjson")).toEqual([
      { position: 1, value: { a: 1 } },
      { position: 3, value: { a: 2 } },
      { position: 4, unparseable: expect.stringContaining("line 4 is not JSON"), text: "not json" },
    ]);
  });

  it('reads a JSON array and {"events": [...]}, and names a document of another shape', async () => {
    expect(await rows(streamOf("a.json", Buffer.from('[{"x":1}]')), "json")).toEqual([{ position: 1, value: { x: 1 } }]);
    expect(await rows(streamOf("b.json", Buffer.from('{"events":[{"x":2}]}')), "json")).toEqual([{ position: 1, value: { x: 2 } }]);
    await expect(rows(streamOf("c.json", Buffer.from('{"rows":[]}')), "json")).rejects.toThrow(/^c\.json: must be a JSON array/);
  });

  it("streams a JSON document: the elements before a syntax error arrive, then the file fails naming the element reached", async () => {
    const seen: unknown[] = [];
    const reading = (async () => {
      for await (const row of readRows(streamOf("broken.json", Buffer.from('{"meta":{"events":[9]},"events":[{"x":1},{"x":2},{"x":')), { format: "json" })) seen.push(row);
    })();
    await expect(reading).rejects.toThrow(/^broken\.json: .*\(after row 2, byte \d+ of the file\)/);
    expect(seen).toEqual([
      { position: 1, value: { x: 1 } },
      { position: 2, value: { x: 2 } },
    ]);
    await expect(rows(streamOf("d.json", Buffer.from('{"events":5}')), "json")).rejects.toThrow(/^d\.json: must be a JSON array .*its "events" is not an array/);
    await expect(rows(streamOf("e.json", Buffer.from(' "text" ')), "json")).rejects.toThrow(/^e\.json: must be a JSON array/);
    expect(await rows(streamOf("f.json", gzipSync(" \n[]")), "json")).toEqual([]);
  });

  it("streams an Avro container file record by record, and a gzipped or piped Parquet file through a temporary file", async () => {
    const records = Array.from({ length: 3 }, (_, n) => ({ id: `id-${n}`, user_id: `u${n}`, external_user_id: `e${n}`, time: 1_700_000_000 + n, name: "Opened", properties: "{}" }));
    const avro = await avroFile(schemaFor("CustomEvent", records), records);
    const avroRows = await rows(streamOf(currentsKey("users.behaviors.CustomEvent", "part.avro"), gzipSync(avro)), "braze-avro");
    expect(avroRows.map((row) => (row as { position: number }).position)).toEqual([1, 2, 3]);
    expect(avroRows[2]).toMatchObject({ value: { id: "id-2", user: { external_user_id: "e2" } } });
    await expect(rows(streamOf(currentsKey("users.behaviors.CustomEvent", "bad.avro"), Buffer.from("not avro at all")), "braze-avro")).rejects.toThrow(/bad\.avro: .*after row 0/);

    const parquet = parquetWriteBuffer({ columnData: [{ name: "event", data: Array.from({ length: 12_000 }, (_, n) => `e${n}`), type: "STRING" }], rowGroupSize: 7_000 });
    const parquetRows = await rows(streamOf("warehouse.parquet.gz", gzipSync(Buffer.from(parquet))), "parquet");
    expect(parquetRows).toHaveLength(12_000);
    expect(parquetRows[11_999]).toEqual({ position: 12_000, value: { event: "e11999" } });
  });

  it("reads Parquet in reads that never span two row groups", () => {
    expect(parquetReads([7_000, 5_000], 5_000)).toEqual([
      [0, 5_000],
      [5_000, 7_000],
      [7_000, 12_000],
    ]);
    expect(parquetReads([0, 3], 5_000)).toEqual([[0, 3]]);
  });

  it("delivers the CSV rows before a ragged one, then fails naming its line", async () => {
    const seen: unknown[] = [];
    const reading = (async () => {
      for await (const row of readRows(streamOf("r.csv", Buffer.from("a,b\n1,2\n3,4,5\n6,7\n")), { format: "csv" })) seen.push(row);
    })();
    await expect(reading).rejects.toBeInstanceOf(ImportFileError);
    await expect(reading).rejects.toThrow(/^r\.csv: ragged row: 3 fields where the header has 2 \(line 3, record 2\)/);
    expect(seen).toEqual([{ position: 1, value: { a: "1", b: "2" } }]);
  });

  it("tells the format from the name, after .gz", () => {
    expect(["x.ndjson.gz", "x.jsonl", "x.json", "x.CSV", "x.parquet", "x.avro", "x.txt"].map(formatFromName)).toEqual(["ndjson", "ndjson", "json", "csv", "parquet", "braze-avro", undefined]);
  });
});

describe("tabular rows and filters", () => {
  it("renames columns, leaves empty cells out, keeps text as written and reads time as seconds or ISO", () => {
    expect(tabularRecord({ name: "Paid", user: "u1", ts: "2026-01-02T03:04:05Z", zip: "00123", note: "" }, "events", { name: "event", user: "distinct_id", ts: "time" })).toEqual({
      event: "Paid",
      properties: { distinct_id: "u1", time: Date.parse("2026-01-02T03:04:05Z"), zip: "00123" },
    });
    expect(tabularRecord({ $distinct_id: "u1", plan: "pro" }, "profiles", {})).toEqual({ $distinct_id: "u1", $set: { plan: "pro" } });
  });

  it("filters on the mapped event's name and time", () => {
    const line = JSON.stringify({ event: "A", properties: { time: 1_000 } });
    expect(filteredOut(line, { include: new Set(["B"]) })).toBe("event_not_included");
    expect(filteredOut(line, { exclude: new Set(["A"]) })).toBe("event_excluded");
    expect(filteredOut(line, { fromMs: 1_001 })).toBe("before_from");
    expect(filteredOut(line, { toMs: 1_000 })).toBe("not_before_to");
    expect(filteredOut(line, { fromMs: 1_000, toMs: 1_001 })).toBeUndefined();
  });
});
