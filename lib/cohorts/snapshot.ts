import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { createGunzip, createGzip } from "node:zlib";
import * as z from "zod";
import { ValidationError } from "../errors.js";

/**
 * Member sets in compact, column form, and the diff between the last delivered
 * snapshot and this run's export (docs/vendors/cohort-sync.md §2).
 *
 * A snapshot is gzipped JSON lines: a header line, then one `[id, hash, identity]`
 * line per member sorted by id (JS string order). `hash` is 48 bits of SHA-1 over
 * the exported properties (so a property change re-sends the member); `identity`
 * holds only what a later removal needs (`$email`, Braze external id property).
 */

export interface MemberColumns {
  readonly ids: string[];
  /** 48-bit property hash per member. */
  readonly hashes: number[];
  /** JSON of the identity properties ("" = none). */
  readonly identities: string[];
}

export const snapshotHeaderSchema = z.object({
  v: z.literal(1),
  sync_id: z.string(),
  cohort_id: z.number(),
  run_id: z.string(),
  created_at: z.string(),
  count: z.number().int().min(0),
});
export type SnapshotHeader = z.infer<typeof snapshotHeaderSchema>;

/** Stable JSON (sorted keys) so the same properties always hash the same. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(value)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

export function propertyHash(properties: Record<string, unknown>): number {
  return createHash("sha1").update(canonicalJson(properties)).digest().readUIntBE(0, 6);
}

export function identityOf(properties: Record<string, unknown>, identityKeys: readonly string[]): string {
  const picked: Record<string, unknown> = {};
  let any = false;
  for (const key of identityKeys) {
    const value = properties[key];
    if (value !== undefined && value !== null && value !== "") {
      picked[key] = value;
      any = true;
    }
  }
  return any ? JSON.stringify(picked) : "";
}

export function emptyColumns(): MemberColumns {
  return { ids: [], hashes: [], identities: [] };
}

const byId = (ids: readonly string[]) => (a: number, b: number) => {
  const x = ids[a] ?? "";
  const y = ids[b] ?? "";
  return x < y ? -1 : x > y ? 1 : a - b;
};

/** Row order sorted by id; for duplicate ids the first row wins (later ones are dropped). */
export function sortedUniqueRows(columns: MemberColumns): Uint32Array {
  const order = new Uint32Array(columns.ids.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  order.sort(byId(columns.ids));
  let out = 0;
  let previous: string | undefined;
  for (let i = 0; i < order.length; i++) {
    const row = order[i] ?? 0;
    const id = columns.ids[row];
    if (id === previous) continue;
    previous = id;
    order[out++] = row;
  }
  return order.subarray(0, out);
}

export interface DiffResult {
  /** Rows of `current` to send (as `members` on a full sync, `add_members` otherwise). */
  readonly send: Uint8Array;
  readonly sendCount: number;
  /** Rows of `previous` that left the cohort. */
  readonly removedRows: number[];
  /** Unique current rows in id order: the next snapshot. */
  readonly nextSnapshotRows: Uint32Array;
}

/**
 * Merge-diff `current` (any order, may hold duplicates) against `previous`
 * (sorted, unique). `full`: every current member is sent; removals are still
 * computed (Brevo/Braze need them even on a full sync).
 */
export function diffMembers(current: MemberColumns, previous: MemberColumns, full: boolean): DiffResult {
  const rows = sortedUniqueRows(current);
  const send = new Uint8Array(current.ids.length);
  const removedRows: number[] = [];
  let sendCount = 0;
  let j = 0;
  const prevIds = previous.ids;
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] ?? 0;
    const id = current.ids[row] ?? "";
    while (j < prevIds.length && (prevIds[j] ?? "") < id) removedRows.push(j++);
    if (j < prevIds.length && prevIds[j] === id) {
      if (full || previous.hashes[j] !== current.hashes[row]) {
        send[row] = 1;
        sendCount++;
      }
      j++;
    } else {
      send[row] = 1;
      sendCount++;
    }
  }
  while (j < prevIds.length) removedRows.push(j++);
  return { send, sendCount, removedRows, nextSnapshotRows: rows };
}

/** Gzipped JSON lines, built in chunks so 10 M members never form one giant string. */
export async function encodeSnapshot(
  header: SnapshotHeader,
  columns: MemberColumns,
  rows: ArrayLike<number>,
): Promise<Buffer> {
  const gzip = createGzip();
  const out: Buffer[] = [];
  gzip.on("data", (chunk: Buffer) => out.push(chunk));
  const done = new Promise<void>((resolve, reject) => {
    gzip.on("end", resolve);
    gzip.on("error", reject);
  });
  const write = (text: string) =>
    new Promise<void>((resolve) => {
      if (gzip.write(text)) resolve();
      else gzip.once("drain", resolve);
    });
  await write(JSON.stringify({ ...header, count: rows.length }) + "\n");
  let batch: string[] = [];
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] ?? 0;
    batch.push(JSON.stringify([columns.ids[row], columns.hashes[row], columns.identities[row]]));
    if (batch.length === 10_000) {
      await write(batch.join("\n") + "\n");
      batch = [];
    }
  }
  if (batch.length > 0) await write(batch.join("\n") + "\n");
  gzip.end();
  await done;
  return Buffer.concat(out);
}

function parseLine(line: string, lineNo: number): [string, number, string] {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new ValidationError(`snapshot line ${lineNo} is not JSON`);
  }
  // Hand-checked rather than zod: this runs up to 10 M times per export.
  if (
    !Array.isArray(raw) ||
    raw.length !== 3 ||
    typeof raw[0] !== "string" ||
    typeof raw[1] !== "number" ||
    typeof raw[2] !== "string"
  ) {
    throw new ValidationError(`snapshot line ${lineNo} has the wrong shape`);
  }
  return [raw[0], raw[1], raw[2]];
}

/** Streams the gunzipped lines; never holds the whole text. */
export async function decodeSnapshot(data: Uint8Array): Promise<{ header: SnapshotHeader; columns: MemberColumns }> {
  const columns = emptyColumns();
  let header: SnapshotHeader | undefined;
  let previous: string | undefined;
  let rest = "";
  let lineNo = 0;
  const take = (line: string) => {
    lineNo++;
    if (line === "") return;
    if (!header) {
      let raw: unknown;
      try {
        raw = JSON.parse(line);
      } catch {
        throw new ValidationError("snapshot header is not JSON");
      }
      const parsed = snapshotHeaderSchema.safeParse(raw);
      if (!parsed.success) throw new ValidationError("snapshot header has the wrong shape");
      header = parsed.data;
      return;
    }
    const [id, hash, identity] = parseLine(line, lineNo);
    if (previous !== undefined && !(previous < id)) throw new ValidationError("snapshot is not sorted by id");
    previous = id;
    columns.ids.push(id);
    columns.hashes.push(hash);
    columns.identities.push(identity);
  };
  const gunzip = Readable.from([Buffer.from(data)]).pipe(createGunzip());
  gunzip.setEncoding("utf8");
  for await (const chunk of gunzip) {
    const text = rest + String(chunk);
    const lines = text.split("\n");
    rest = lines.pop() ?? "";
    for (const line of lines) take(line);
  }
  take(rest);
  if (!header) throw new ValidationError("snapshot is empty");
  return { header, columns };
}
