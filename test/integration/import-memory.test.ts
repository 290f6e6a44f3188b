import { createReadStream, createWriteStream, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { constants as zlibConstants, createGzip } from "node:zlib";
import avro from "avsc";
import { ParquetWriter, fileWriter, schemaFromColumnData } from "hyparquet-writer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runResultChild } from "../support/result-child.js";
import { currentsKey, schemaFor } from "../unit/sources/avro-support.js";

/**
 * Memory stays bounded by a batch, not a file, for every format: each file below holds about
 * 150 MB of rows once decoded, and the import (a dry run: read, map, PII rules) runs in a
 * process of its own (its heap capped at 64 MB) whose peak resident set may grow by less than
 * three quarters of that. A reader that held the file, or its parsed rows, whole runs out of
 * heap or passes the bound.
 */
const ROWS = 120_000;
const PADDING = 1_200;
const DECODED_MB = (ROWS * PADDING) / 2 ** 20;
const MAX_GROWTH_MB = (DECODED_MB * 3) / 4;
const HEAP_MB = 64;
const SEMI_SPACE_MB = 16;
const NOW_S = Math.floor(Date.now() / 1000);
let dir: string;

const padding = (n: number) => `${n.toString(36)}-`.repeat(PADDING).slice(0, PADDING);
const eventAt = (n: number) => ({ event: "Viewed", properties: { distinct_id: `mem-${n % 5_000}`, time: NOW_S - 86_400 + (n % 80_000), note: padding(n) } });
function* events(): Generator<ReturnType<typeof eventAt>> {
  for (let n = 0; n < ROWS; n += 1) yield eventAt(n);
}

async function writeText(path: string, parts: Iterable<string>, gzip: boolean): Promise<void> {
  const source = Readable.from(parts, { objectMode: false });
  if (gzip) await pipeline(source, createGzip({ level: zlibConstants.Z_BEST_SPEED }), createWriteStream(path));
  else await pipeline(source, createWriteStream(path));
}

async function writeAvro(path: string): Promise<void> {
  const records = function* () {
    for (const { event, properties } of events()) yield { id: `id-${properties.note.slice(0, 8)}-${properties.time}`, user_id: "5f1d0c7e9d3b2a0012345670", external_user_id: properties.distinct_id, time: properties.time, name: event, properties: JSON.stringify({ note: properties.note }) };
  };
  const first = records().next().value as Record<string, unknown>;
  const encoder = new avro.streams.BlockEncoder(avro.Type.forSchema(schemaFor("CustomEvent", [first])));
  await pipeline(Readable.from(records()), encoder, createWriteStream(path));
}

async function writeParquetGz(path: string): Promise<void> {
  const plain = `${path}.plain`;
  const groupRows = 10_000;
  let writer: ParquetWriter | undefined;
  const target = fileWriter(plain);
  for (let start = 0; start < ROWS; start += groupRows) {
    const slice = Array.from({ length: Math.min(groupRows, ROWS - start) }, (_, offset) => eventAt(start + offset));
    const columnData = [
      { name: "event", data: slice.map((row) => row.event), type: "STRING" as const },
      { name: "distinct_id", data: slice.map((row) => row.properties.distinct_id), type: "STRING" as const },
      { name: "time", data: slice.map((row) => row.properties.time), type: "INT32" as const },
      { name: "note", data: slice.map((row) => row.properties.note), type: "STRING" as const },
    ];
    // Uncompressed pages: the file itself is as large as its rows, as a warehouse export of varied text would be.
    writer ??= new ParquetWriter({ writer: target, schema: schemaFromColumnData({ columnData }), codec: "UNCOMPRESSED" });
    writer.write({ columnData, rowGroupSize: groupRows });
  }
  writer?.finish();
  await pipeline(createReadStream(plain), createGzip({ level: zlibConstants.Z_BEST_SPEED }), createWriteStream(path));
  rmSync(plain);
}

async function importInChild(path: string, format: string): Promise<{ read: number; accepted: number; failed: string | null; loadedRssMb: number; peakRssMb: number }> {
  const script = resolve(import.meta.dirname, "import-memory-child.ts");
  const env = { ...process.env, IMPORT_MEMORY_FILE: path, IMPORT_MEMORY_FORMAT: format };
  // The young generation is pinned too: Node 24's V8 grows its semi-spaces to 32 MB each under
  // steady allocation (Node 20 stays at 16), which alone adds ~100 MB of resident set whatever the
  // reader holds; pinned, the bound measures what the reader keeps, on either Node.
  return (await runResultChild([`--max-old-space-size=${HEAP_MB}`, `--max-semi-space-size=${SEMI_SPACE_MB}`, "--import", "tsx", script], { env, timeoutMs: 120_000 })) as Awaited<ReturnType<typeof importInChild>>;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "relay-import-memory-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("import memory, a file of about 150 MB decoded", () => {
  const cases: [string, string, (path: string) => Promise<void>][] = [
    ["json", "history.json", (path) => writeText(path, (function* () { yield '{"events":['; let first = true; for (const row of events()) { yield `${first ? "" : ","}${JSON.stringify(row)}`; first = false; } yield "]}"; })(), false)],
    ["braze-avro", currentsKey("users.behaviors.CustomEvent", "history.avro"), writeAvro],
    ["parquet", "history.parquet.gz", writeParquetGz],
    ["ndjson", "history.ndjson.gz", (path) => writeText(path, (function* () { for (const row of events()) yield `${JSON.stringify(row)}\n`; })(), true)],
  ];
  for (const [format, name, write] of cases) {
    it(`${format}: peak RSS grows by less than three quarters of the decoded file`, async () => {
      const path = join(dir, name);
      mkdirSync(resolve(path, ".."), { recursive: true });
      await write(path);
      const result = await importInChild(path, format);
      rmSync(path, { force: true });
      expect(result).toMatchObject({ read: ROWS, accepted: ROWS, failed: null });
      expect(result.peakRssMb - result.loadedRssMb).toBeLessThan(MAX_GROWTH_MB);
    }, 180_000);
  }
});
