import { createReadStream, createWriteStream } from "node:fs";
import { type FileHandle, mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { parse as parseCsv } from "csv-parse";
import { type AsyncBuffer, parquetMetadataAsync, parquetReadObjects, parquetSchema, type SchemaTree } from "hyparquet";
import { brazeAvroRecordToEvent, brazeEventTypeFromKey } from "../sources/braze-avro.js";
import { parseJson } from "../util/json.js";
import { MAX_LINE_BYTES, avroContainerRecords, jsonArrayElements, ndjsonLines } from "./stream-formats.js";

/**
 * Reads the rows of one history file, streamed (NDJSON and CSV line by line, JSON element by
 * element, Avro block by block, Parquet a slice of a row group at a time), so memory stays
 * bounded by a batch, not a file. Every row carries its 1-based position in the file (line for NDJSON, record for CSV,
 * row for Parquet, element for JSON, record for Avro), which is what a resumed run skips and
 * what every message names.
 */
export const IMPORT_FORMATS = ["ndjson", "json", "csv", "parquet", "braze-avro"] as const;
export type ImportFormat = (typeof IMPORT_FORMATS)[number];

/** Where a file comes from: a local path, or standard input (`-`). */
export type FileRef = { readonly kind: "local"; readonly path: string } | { readonly kind: "stdin"; readonly path: "-" } | { readonly kind: "stream"; readonly path: string; readonly open: () => Promise<Readable> };

export type SourceRow =
  | { readonly position: number; readonly value: unknown }
  /** A row that could not be parsed on its own (a bad NDJSON line): a rejection, not a failed file. */
  | { readonly position: number; readonly unparseable: string; readonly text: string };

/** A file that cannot be read any further: named with the position reached. */
export class ImportFileError extends Error {
  override readonly name = "ImportFileError";
  constructor(
    readonly file: string,
    readonly position: string,
    readonly detail: string,
  ) {
    super(`${file}: ${detail} (${position})`);
  }
}

const GZIP_MAGIC = [0x1f, 0x8b] as const;

/** The format a file's name says (after a `.gz`), or undefined. */
export function formatFromName(path: string): ImportFormat | undefined {
  const name = path.toLowerCase().replace(/\.gz$/, "");
  if (name.endsWith(".ndjson") || name.endsWith(".jsonl")) return "ndjson";
  if (name.endsWith(".json")) return "json";
  if (name.endsWith(".csv")) return "csv";
  if (name.endsWith(".parquet")) return "parquet";
  if (name.endsWith(".avro")) return "braze-avro";
  return undefined;
}

interface ByteCounter {
  /** Bytes read from the file as stored (compressed when gzipped). */
  bytes: number;
  gzip: boolean;
}

async function rawStream(ref: FileRef): Promise<Readable> {
  if (ref.kind === "stdin") return process.stdin;
  if (ref.kind === "stream") return ref.open();
  return createReadStream(ref.path, { highWaterMark: 256 * 1024 });
}

/** The file's bytes, gunzipped when its name ends in .gz or its first bytes are gzip's magic. */
async function decodedStream(ref: FileRef, counter: ByteCounter): Promise<Readable> {
  const source = await rawStream(ref);
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const first = await iterator.next();
  if (first.done) return Readable.from([]);
  const head = Buffer.from(first.value);
  counter.gzip = ref.path.toLowerCase().endsWith(".gz") || (head[0] === GZIP_MAGIC[0] && head[1] === GZIP_MAGIC[1]);
  const counted = Readable.from(
    (async function* () {
      counter.bytes += head.length;
      yield head;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        counter.bytes += next.value.length;
        yield Buffer.from(next.value);
      }
    })(),
    { objectMode: false },
  );
  if (!counter.gzip) return counted;
  // Large output chunks: fewer thread-pool round trips per MB decompressed.
  const gunzip = createGunzip({ chunkSize: 256 * 1024 });
  counted.on("error", (error) => gunzip.destroy(error));
  return counted.pipe(gunzip);
}

function describe(error: unknown): string {
  if (error instanceof Error) return (error as { code?: string }).code === "Z_BUF_ERROR" ? "truncated gzip: unexpected end of file" : error.message;
  return String(error);
}

export interface ReadRowsOptions {
  readonly format: ImportFormat;
}

/** Every row of the file, in order; throws ImportFileError when the file cannot be read further. */
export async function* readRows(ref: FileRef, options: ReadRowsOptions, counter: ByteCounter = { bytes: 0, gzip: false }): AsyncGenerator<SourceRow> {
  let position = 0;
  const where = () => `after row ${position}, byte ${counter.bytes} of the ${counter.gzip ? "compressed " : ""}file`;
  try {
    switch (options.format) {
      case "ndjson": {
        for await (const line of ndjsonLines(await decodedStream(ref, counter))) {
          position += 1;
          if ("tooLong" in line) {
            yield { position, unparseable: `line ${position} is longer than ${MAX_LINE_BYTES} bytes (${line.tooLong}); Mixpanel takes at most 1 MB per event`, text: "" };
            continue;
          }
          if (line.text.trim() === "") continue;
          const parsed = parseJson(line.text);
          if (parsed.ok) yield { position, value: parsed.value };
          else yield { position, unparseable: `line ${position} is not JSON: ${parsed.error}`, text: line.text };
        }
        return;
      }
      case "json": {
        for await (const element of jsonArrayElements(await decodedStream(ref, counter))) {
          position += 1;
          yield { position, value: element };
        }
        return;
      }
      case "csv": {
        // The header is checked here rather than by csv-parse's own column count, so every row
        // before a ragged one is delivered and the message names the ragged row's line.
        const parser = (await decodedStream(ref, counter)).pipe(parseCsv({ bom: true, skip_empty_lines: true, info: true, relax_column_count: true }));
        let header: string[] | undefined;
        for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
          if (header === undefined) {
            header = record;
            continue;
          }
          if (record.length !== header.length) {
            throw new ImportFileError(ref.path, `line ${info.lines}, record ${position + 1}`, `ragged row: ${record.length} fields where the header has ${header.length}`);
          }
          position += 1;
          const value: Record<string, string> = {};
          header.forEach((column, at) => Object.defineProperty(value, column, { value: record[at], enumerable: true, writable: true, configurable: true }));
          yield { position, value };
        }
        return;
      }
      case "parquet": {
        yield* readParquet(ref, counter, (reached) => (position = reached));
        return;
      }
      case "braze-avro": {
        const eventType = brazeEventTypeFromKey(ref.path.replace(/\\/g, "/"));
        if (eventType === undefined) throw new ImportFileError(ref.path, "its path", "has no event_type=<type>/ segment (as Braze Currents writes), so its events cannot be named");
        for await (const record of avroContainerRecords(await decodedStream(ref, counter))) {
          position += 1;
          yield { position, value: brazeAvroRecordToEvent(record, eventType) };
        }
        return;
      }
    }
  } catch (error) {
    if (error instanceof ImportFileError) throw error;
    const csvLine = (error as { lines?: number }).lines;
    throw new ImportFileError(ref.path, csvLine !== undefined ? `line ${csvLine}, record ${position + 1}` : where(), describe(error));
  }
}

/** Parquet physical types whose values become JSON without guessing (https://parquet.apache.org/docs/file-format/types/). */
const READABLE_PHYSICAL = new Set(["BOOLEAN", "INT32", "INT64", "FLOAT", "DOUBLE", "INT96"]);
/** BYTE_ARRAY / FIXED_LEN_BYTE_ARRAY only when annotated as text, JSON, a UUID or a decimal. */
const READABLE_ANNOTATIONS = new Set(["UTF8", "STRING", "JSON", "ENUM", "UUID", "DECIMAL"]);

function unsupportedColumn(tree: SchemaTree, path: string[] = []): string | undefined {
  for (const child of tree.children) {
    const name = [...path, child.element.name];
    if (child.children.length > 0) {
      return `column ${name.join(".")} is a nested group (${child.element.converted_type ?? "struct"}); flatten it to scalar columns`;
    }
    const physical = child.element.type ?? "";
    const annotation = child.element.logical_type?.type ?? child.element.converted_type ?? "";
    if (READABLE_PHYSICAL.has(physical)) continue;
    if ((physical === "BYTE_ARRAY" || physical === "FIXED_LEN_BYTE_ARRAY") && READABLE_ANNOTATIONS.has(annotation)) continue;
    return `column ${name.join(".")} has the unsupported type ${physical}${annotation ? ` (${annotation})` : " without a text annotation"}`;
  }
  return undefined;
}

/** Rows decoded per read: a read never spans two row groups, and skips the pages before its first row. */
const PARQUET_ROWS_PER_READ = 5_000;

/** [first row, end row) of each read, row group by row group. */
export function parquetReads(groupRows: readonly number[], rowsPerRead = PARQUET_ROWS_PER_READ): [number, number][] {
  const reads: [number, number][] = [];
  let groupStart = 0;
  for (const rows of groupRows) {
    for (let start = groupStart; start < groupStart + rows; start += rowsPerRead) reads.push([start, Math.min(groupStart + rows, start + rowsPerRead)]);
    groupStart += rows;
  }
  return reads;
}

async function* readParquet(ref: FileRef, counter: ByteCounter, reached: (position: number) => void): AsyncGenerator<SourceRow> {
  // Parquet needs random access (the footer first): a compressed, piped or S3 file is first
  // written, decompressed, to a temporary file, never held in memory.
  const plainLocal = ref.kind === "local" && !ref.path.toLowerCase().endsWith(".gz") && !(await startsWithGzip(ref.path));
  const spool = plainLocal ? undefined : await mkdtemp(join(tmpdir(), "relay-import-parquet-"));
  let handle: FileHandle | undefined;
  try {
    let path = ref.path;
    if (spool) {
      path = join(spool, "file.parquet");
      await pipeline(await decodedStream(ref, counter), createWriteStream(path));
    }
    handle = await open(path, "r");
    const file = fileSlices(handle, (await handle.stat()).size);
    if (!spool) counter.bytes = file.byteLength;
    let metadata;
    try {
      metadata = await parquetMetadataAsync(file);
    } catch (error) {
      throw new ImportFileError(ref.path, "the footer", `not a readable Parquet file: ${describe(error)}`);
    }
    const unsupported = unsupportedColumn(parquetSchema(metadata));
    if (unsupported) throw new ImportFileError(ref.path, "the schema", unsupported);
    for (const [start, end] of parquetReads(metadata.row_groups.map((group) => Number(group.num_rows)))) {
      let rows: Record<string, unknown>[];
      try {
        rows = await parquetReadObjects({ file, metadata, rowStart: start, rowEnd: end });
      } catch (error) {
        throw new ImportFileError(ref.path, `rows ${start + 1}–${end}`, describe(error));
      }
      for (const [offset, value] of rows.entries()) {
        reached(start + offset + 1);
        yield { position: start + offset + 1, value };
      }
    }
  } finally {
    await handle?.close();
    if (spool) await rm(spool, { recursive: true, force: true });
  }
}

/** The file as hyparquet's AsyncBuffer: each slice one read into a buffer of its exact size, through one open handle. */
function fileSlices(handle: FileHandle, byteLength: number): AsyncBuffer {
  return {
    byteLength,
    async slice(start, end = byteLength) {
      const bytes = new Uint8Array(Math.max(0, end - start));
      for (let filled = 0; filled < bytes.length; ) {
        const { bytesRead } = await handle.read(bytes, filled, bytes.length - filled, start + filled);
        if (bytesRead === 0) throw new Error(`the file ends at byte ${start + filled}, before ${end}`);
        filled += bytesRead;
      }
      return bytes.buffer;
    },
  };
}

async function startsWithGzip(path: string): Promise<boolean> {
  const handle = await open(path, "r");
  try {
    const head = Buffer.alloc(2);
    await handle.read(head, 0, 2, 0);
    return head[0] === GZIP_MAGIC[0] && head[1] === GZIP_MAGIC[1];
  } finally {
    await handle.close();
  }
}
