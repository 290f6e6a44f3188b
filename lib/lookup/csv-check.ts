import { createHash } from "node:crypto";
import { Readable, Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip } from "node:zlib";
import type { CsvError as CsvParseError } from "csv-parse";
import { ValidationError } from "../util/errors.js";

/**
 * Checks a lookup-table CSV the way Mixpanel will before a replace is spent on it
 * (docs/vendors/mixpanel-api.md "Keeping lookup tables fresh",
 * https://docs.mixpanel.com/reference/replace-lookup-table): RFC 4180, at least two
 * columns, unique non-empty header names, a first column that is a unique, non-empty
 * (and not falsy) key in every row, at most 100 MB uncompressed and fewer than 5 M rows.
 * A refused replace costs one of the project's 100 calls per 24 h and Mixpanel names at
 * most ten bad rows, so the relay refuses first and names the row and column itself.
 *
 * One streaming pass: the input (gzip when it starts with gzip's magic bytes) is
 * counted, hashed (SHA-256 of the uncompressed bytes, so recompressing an unchanged
 * file is still "unchanged"), parsed with csv-parse and gzipped again as the body to send.
 */
export interface LookupCsvLimits {
  /** Mixpanel: at most 100 MB uncompressed (413 beyond it). */
  readonly maxBytes: number;
  /** Mixpanel: fewer than 5 M rows. Counted without the header row. */
  readonly maxRows: number;
}

export const LOOKUP_CSV_LIMITS: LookupCsvLimits = { maxBytes: 100_000_000, maxRows: 4_999_999 };

export interface LookupCsvSummary {
  readonly headers: readonly string[];
  /** Data rows (the header row not counted). */
  readonly rows: number;
  /** Uncompressed bytes. */
  readonly bytes: number;
  /** SHA-256 (hex) of the uncompressed bytes. */
  readonly sha256: string;
  /** The file gzipped, ready for `Content-Encoding: gzip`. */
  readonly gzipBody: Buffer;
}

/** A refusal that names where: row 1 is the header row; columns count from 1. */
export class LookupCsvError extends ValidationError {
  constructor(
    message: string,
    readonly row?: number,
    readonly column?: number,
  ) {
    super(message);
  }
}

export interface LookupCsvProgress {
  (progress: { bytes: number; rows: number }): void;
}

const GZIP_MAGIC = [0x1f, 0x8b] as const;
/** One record's cap: keeps a file without line ends from growing a single field to 100 MB. */
const MAX_RECORD_BYTES = 1_048_576;
const PROGRESS_EVERY_ROWS = 50_000;

const show = (text: string) => JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}…` : text);

/** Mixpanel types `0` as a number and `false` (any case) as a boolean: a falsy key joins nothing. */
function falsyKey(key: string): boolean {
  if (/^false$/i.test(key)) return true;
  return /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/.test(key.trim()) && Number(key) === 0;
}

/** The input as plain bytes: gunzipped when its first two bytes are gzip's magic number. */
async function* plainBytes(input: LookupCsvInput): AsyncGenerator<Buffer> {
  const iterator = (Readable.from(input, { objectMode: false }) as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  let done = false;
  while (head.length < GZIP_MAGIC.length && !done) {
    const next = await iterator.next();
    if (next.done) done = true;
    else head = Buffer.concat([head, Buffer.from(next.value)]);
  }
  const rest = async function* (): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    if (done) return;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield Buffer.from(next.value);
    }
  };
  if (head[0] !== GZIP_MAGIC[0] || head[1] !== GZIP_MAGIC[1]) {
    yield* rest();
    return;
  }
  const gunzip = Readable.from(rest()).pipe(createGunzip());
  try {
    for await (const chunk of gunzip) yield chunk as Buffer;
  } catch (error) {
    throw new LookupCsvError(`the file starts like gzip but does not decompress: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function csvRefusal(error: CsvParseError): LookupCsvError {
  const records = typeof error.records === "number" ? error.records : undefined;
  const row = records === undefined ? undefined : records + 1;
  const column = typeof error.index === "number" ? error.index + 1 : undefined;
  const where = row === undefined ? "" : column === undefined ? `row ${row}: ` : `row ${row}, column ${column}: `;
  if (error.code === "CSV_RECORD_INCONSISTENT_FIELDS_LENGTH") {
    return new LookupCsvError(`row ${row ?? "?"}: not RFC 4180: every row needs as many fields as the header (${error.message})`, row);
  }
  return new LookupCsvError(`${where}not RFC 4180: ${error.message}`, row, column);
}

/** Chunks of the file: a Node stream, an async generator, or an array of buffers. */
export type LookupCsvInput = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

export async function checkLookupCsv(
  input: LookupCsvInput,
  limits: LookupCsvLimits = LOOKUP_CSV_LIMITS,
  onProgress?: LookupCsvProgress,
): Promise<LookupCsvSummary> {
  const hash = createHash("sha256");
  const gzip = createGzip();
  const compressed: Buffer[] = [];
  gzip.on("data", (chunk: Buffer) => compressed.push(chunk));
  const gzipped = new Promise<void>((resolve, reject) => {
    gzip.once("end", resolve);
    gzip.once("error", reject);
  });
  let bytes = 0;
  let rows = 0;
  let headers: string[] = [];
  const keys = new Map<string, number>();

  const count = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      if (bytes > limits.maxBytes) {
        done(new LookupCsvError(`row ${rows + 2}: the file passes ${limits.maxBytes} bytes uncompressed (Mixpanel takes at most 100 MB)`, rows + 2));
        return;
      }
      hash.update(chunk);
      gzip.write(chunk);
      done(null, chunk);
    },
  });
  // Loaded on the first lookup-table run: the cohort-export function's cold start skips it.
  const { CsvError, parse } = await import("csv-parse");
  const parser = parse({ bom: true, info: true, max_record_size: MAX_RECORD_BYTES, relax_quotes: false, relax_column_count: false });
  const check = new Writable({
    objectMode: true,
    write(item: { record: string[]; info: { records: number } }, _encoding, done) {
      try {
        const row = item.info.records;
        if (row === 1) headers = checkHeader(item.record);
        else {
          rows = row - 1;
          if (rows > limits.maxRows) throw new LookupCsvError(`row ${row}: more than ${limits.maxRows} data rows (Mixpanel takes fewer than 5 M rows)`, row);
          checkKey(item.record[0] ?? "", row);
          if (onProgress && rows % PROGRESS_EVERY_ROWS === 0) onProgress({ bytes, rows });
        }
        done();
      } catch (error) {
        done(error as Error);
      }
    },
  });

  function checkHeader(record: string[]): string[] {
    if (record.length < 2) throw new LookupCsvError(`row 1: a lookup table needs at least 2 columns (a key and a value), found ${record.length}`, 1);
    const seen = new Map<string, number>();
    record.forEach((name, index) => {
      const column = index + 1;
      if (name.trim() === "") throw new LookupCsvError(`row 1, column ${column}: empty header name`, 1, column);
      const earlier = seen.get(name);
      if (earlier !== undefined) throw new LookupCsvError(`row 1, column ${column} ${show(name)}: repeats the header of column ${earlier}`, 1, column);
      seen.set(name, column);
    });
    return record;
  }

  function checkKey(key: string, row: number): void {
    const column = `row ${row}, column 1 ${show(headers[0] ?? "")}`;
    if (key.trim() === "") throw new LookupCsvError(`${column}: empty key (the first column joins the table and must be set in every row)`, row, 1);
    if (falsyKey(key)) throw new LookupCsvError(`${column}: key ${show(key)} is falsy once Mixpanel types it, which it refuses`, row, 1);
    const earlier = keys.get(key);
    if (earlier !== undefined) throw new LookupCsvError(`${column}: key ${show(key)} repeats row ${earlier}`, row, 1);
    keys.set(key, row);
  }

  try {
    await pipeline(Readable.from(plainBytes(input)), count, parser, check);
  } catch (error) {
    gzip.destroy();
    if (error instanceof CsvError) throw csvRefusal(error);
    throw error;
  }
  gzip.end();
  await gzipped;
  if (headers.length === 0) throw new LookupCsvError("row 1: the file is empty (a lookup table needs a header row and at least 2 columns)", 1);
  if (rows === 0) throw new LookupCsvError("row 2: no data rows after the header", 2);
  return { headers, rows, bytes, sha256: hash.digest("hex"), gzipBody: Buffer.concat(compressed) };
}
