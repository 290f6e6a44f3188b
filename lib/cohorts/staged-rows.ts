import { gunzipSync } from "node:zlib";
import { ValidationError } from "../errors.js";
import { canonicalJson } from "../util/json.js";
import { type PageMember, parseMembers } from "./messages.js";
import { type DiffResult, type MemberColumns, type PropHashAlgorithm, diffMembers, idHash, idHashOfAsciiBytes, identityOf, propertyHashOfAsciiBytes, propertyHashOfPieces, propertyHashOfText, rowsInHashOrder } from "./snapshot.js";

/**
 * Staged export pages and partition chunks as the relay stores them (v2): a header
 * line, then one line per member,
 *
 *     <id as a JSON string> TAB <fnv-52 property hash> TAB <properties as canonical JSON>
 *
 * Why lines and not one JSON document (v1, `{"members":[...]}`): the property hash
 * is computed once, when the page is staged, from the canonical text that is also
 * the stored properties; the spill step (emit-partitioned.ts) moves a member to its
 * partition by reading only its id and copying the line as it is; and the diff
 * parses the properties of the members it sends (a few percent of a run) only.
 * A JSON string never holds a raw tab or newline (JSON.stringify escapes them), so
 * the first tab ends the id and every member is one line.
 *
 * v2 objects are stored as plain text, not gzipped: they live for one run (the
 * `cohort-runs/` lifecycle rule), S3 bills them per request rather than per byte,
 * and gzip plus gunzip cost about as much CPU per member as the whole diff.
 * v1 objects (gzipped JSON, staged or spilled by the release before and still in
 * S3 when it was deployed mid-run) are read too, and turned into the same lines;
 * their key names (`.json.gz`) stay so such a run still finds them.
 */
export const STAGED_HEADER = '{"staged":2}';

/** Staged members as text: their ids and v2 lines (parseStagedText). */
export interface StagedLines {
  readonly ids: string[];
  /** One v2 line per member (without the newline). */
  readonly lines: string[];
}

export function stagedLine(member: PageMember): string {
  const pieces = canonicalPieces(member.props);
  let length = 0;
  for (const piece of pieces) length += piece.length;
  return `${JSON.stringify(member.id)}\t${propertyHashOfPieces(pieces, length)}\t${pieces.join("")}`;
}

/**
 * canonicalJson(record) (util/json.ts) as its parts: "{", then `"key":` and the value's
 * JSON per key in sorted order with "," between, then "}". The joined parts are the same
 * text, so the property hash is the one stored snapshots hold; writing the top level by
 * hand costs about a third of canonicalJson's sorted copy and JSON.stringify for the flat
 * property objects /engage returns, and the parts are hashed without joining them first.
 * Values other than strings, numbers, booleans and null are written by canonicalJson.
 */
function canonicalPieces(record: Record<string, unknown>): string[] {
  const sorted = sortedKeysOf(record);
  const pieces: string[] = ["{"];
  for (const key of sorted) {
    const value = record[key];
    let text: string;
    switch (typeof value) {
      case "undefined":
        continue;
      case "string":
        text = JSON.stringify(value);
        break;
      case "number":
        // Number-to-string is JSON's number format for finite numbers; JSON writes the others as null.
        text = Number.isFinite(value) ? String(value) : "null";
        break;
      case "boolean":
        text = value ? "true" : "false";
        break;
      default:
        text = value === null ? "null" : canonicalJson(value);
    }
    if (pieces.length > 1) pieces.push(",");
    pieces.push(keyPrefix(key), text);
  }
  pieces.push("}");
  return pieces;
}

/** The members of a page share their keys: the last key list and its sorted order are kept. */
let lastKeys: string[] = [];
let lastSorted: string[] = [];

function sortedKeysOf(record: Record<string, unknown>): string[] {
  const keys = Object.keys(record);
  if (keys.length === lastKeys.length) {
    let same = true;
    for (let i = 0; i < keys.length && same; i++) same = keys[i] === lastKeys[i];
    if (same) return lastSorted;
  }
  lastKeys = keys;
  // Default sort: UTF-16 code unit order, as canonicalJson sorts.
  lastSorted = [...keys].sort();
  return lastSorted;
}

/** `"key":`, for the keys of the last few pages (bounded: keys come from Mixpanel profiles). */
const KEY_PREFIXES = new Map<string, string>();

function keyPrefix(key: string): string {
  const cached = KEY_PREFIXES.get(key);
  if (cached !== undefined) return cached;
  const prefix = `${JSON.stringify(key)}:`;
  if (KEY_PREFIXES.size >= 4096) KEY_PREFIXES.clear();
  if (key.length <= 128) KEY_PREFIXES.set(key, prefix);
  return prefix;
}

/**
 * utf8Bytes(stagedTextOfMembers(members)), the same bytes, written straight into a
 * buffer: a member whose id and string values are printable ASCII without `"` or `\`
 * (nearly every profile) is copied character by character and hashed over those bytes,
 * which for ASCII are the UTF-16 code units propertyHashOfPieces reads; any other member
 * is written by stagedLine. Building each line as strings, joining them and encoding the
 * page was most of the staging step's ~1.9 µs per member (issue 12 profile).
 */
export function stagedPageBytes(members: readonly PageMember[]): Buffer {
  const out = new ByteWriter(256 + members.length * 160);
  out.ascii(STAGED_HEADER);
  out.byte(10);
  for (const member of members) {
    if (!writePlainLine(out, member)) {
      out.utf8(stagedLine(member));
    }
    out.byte(10);
  }
  return out.result();
}

/** The member's v2 line, when it is plain (see stagedPageBytes); false, with nothing written, otherwise. */
function writePlainLine(out: ByteWriter, member: PageMember): boolean {
  const props = PROPS_SCRATCH;
  props.reset();
  const record = member.props;
  props.byte(123); // {
  let first = true;
  for (const key of sortedKeysOf(record)) {
    const value = record[key];
    if (value === undefined) continue;
    if (!first) props.byte(44); // ,
    first = false;
    if (!props.quoted(key)) return false;
    props.byte(58); // :
    switch (typeof value) {
      case "string":
        if (!props.quoted(value)) return false;
        break;
      case "number":
        // JSON's number format for finite numbers is Number-to-string; it writes the others as null.
        if (Number.isSafeInteger(value)) props.integer(value);
        else props.ascii(Number.isFinite(value) ? String(value) : "null");
        break;
      case "boolean":
        props.ascii(value ? "true" : "false");
        break;
      default:
        if (value !== null) return false;
        props.ascii("null");
    }
  }
  props.byte(125); // }
  const mark = out.length;
  if (!out.quoted(member.id)) {
    out.length = mark;
    return false;
  }
  out.byte(9);
  out.integer(propertyHashOfAsciiBytes(props.bytes, props.length));
  out.byte(9);
  out.append(props);
  return true;
}

/** A growing byte buffer for stagedPageBytes. */
class ByteWriter {
  bytes: Buffer;
  length = 0;

  constructor(capacity: number) {
    this.bytes = Buffer.allocUnsafe(capacity);
  }

  reset(): void {
    this.length = 0;
  }

  private room(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.length + n));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }

  byte(b: number): void {
    this.room(1);
    this.bytes[this.length++] = b;
  }

  /** Text known to be ASCII. */
  ascii(text: string): void {
    this.room(text.length);
    for (let i = 0; i < text.length; i++) this.bytes[this.length++] = text.charCodeAt(i);
  }

  /** A safe integer's decimal digits (String(value), without the string). */
  integer(value: number): void {
    this.room(17);
    let rest = value;
    if (rest < 0) {
      this.bytes[this.length++] = 45; // -
      rest = -rest;
    }
    // Eight digits at a time keeps each part a small integer.
    const high = Math.floor(rest / 100_000_000);
    const low = rest - high * 100_000_000;
    if (high > 0) {
      this.digits(high, 0);
      this.digits(low, 8);
    } else this.digits(low, 0);
  }

  /** The digits of 0 ≤ value < 10^8, zero-padded to `width`. */
  private digits(value: number, width: number): void {
    let count = 1;
    for (let v = value; v >= 10; v = Math.floor(v / 10)) count++;
    if (count < width) count = width;
    let at = this.length + count;
    this.length = at;
    let v = value;
    for (let k = 0; k < count; k++) {
      const q = Math.floor(v / 10);
      this.bytes[--at] = 48 + v - q * 10;
      v = q;
    }
  }

  /** JSON.stringify(text) when that is the text between quotes (printable ASCII, no `"` or `\`); else false. */
  quoted(text: string): boolean {
    const n = text.length;
    this.room(n + 2);
    const bytes = this.bytes;
    let at = this.length;
    bytes[at++] = 34;
    for (let i = 0; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c < 0x20 || c > 0x7e || c === 34 || c === 92) return false;
      bytes[at++] = c;
    }
    bytes[at++] = 34;
    this.length = at;
    return true;
  }

  utf8(text: string): void {
    this.room(Buffer.byteLength(text, "utf8"));
    this.length += this.bytes.write(text, this.length, "utf8");
  }

  append(other: ByteWriter): void {
    this.room(other.length);
    this.bytes.set(other.bytes.subarray(0, other.length), this.length);
    this.length += other.length;
  }

  /** The bytes written, copied out (the writer's buffer is larger). */
  result(): Buffer {
    return Buffer.from(this.bytes.subarray(0, this.length));
  }
}

/** One member's properties while they are written (reused: staging is synchronous per page). */
const PROPS_SCRATCH = new ByteWriter(4096);

/** The text of a staged page or partition chunk. */
export function stagedText(lines: readonly string[]): string {
  // One join (a flat string), not a template around it: encoding a concatenation flattens it first.
  return [STAGED_HEADER, ...lines, ""].join("\n");
}

/** A page of members as text: the definition stagedPageBytes' bytes are held to (its tests), and what tests stage by hand. */
export function stagedTextOfMembers(members: readonly PageMember[]): string {
  return stagedText(members.map(stagedLine));
}

/** The text of a stored staged page or chunk: gzipped (v1) or not (v2). */
export function stagedObjectText(bytes: Uint8Array, what: string): string {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer[0] !== 0x1f || buffer[1] !== 0x8b) return buffer.toString("utf8");
  try {
    return gunzipSync(buffer).toString("utf8");
  } catch {
    throw new ValidationError(`${what} is not gzipped`);
  }
}

/** Reads v2 lines or a v1 document; throws ValidationError naming `what` on anything else. */
export function parseStagedText(text: string, what: string, into: StagedLines = { ids: [], lines: [] }): StagedLines {
  if (!text.startsWith(`${STAGED_HEADER}\n`)) {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      throw new ValidationError(`${what} is not a staged page`);
    }
    const list = raw !== null && typeof raw === "object" ? Reflect.get(raw, "members") : undefined;
    for (const member of parseMembers(list, what)) {
      into.ids.push(member.id);
      into.lines.push(stagedLine(member));
    }
    return into;
  }
  let start = STAGED_HEADER.length + 1;
  while (start < text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    const line = text.slice(start, end);
    start = end + 1;
    if (line === "") continue;
    into.ids.push(lineId(line, what));
    into.lines.push(line);
  }
  return into;
}

export function lineId(line: string, what: string): string {
  const tab = line.indexOf("\t");
  if (tab < 2 || line.charCodeAt(0) !== 34 || line.charCodeAt(tab - 1) !== 34) throw new ValidationError(`${what}: a member line has no id`);
  const text = line.slice(0, tab);
  // Most ids need no unescaping: the slice between the quotes is the id.
  if (text.indexOf("\\") < 0) return text.slice(1, -1);
  let id: unknown;
  try {
    id = JSON.parse(text);
  } catch {
    throw new ValidationError(`${what}: a member id is not a JSON string`);
  }
  if (typeof id !== "string") throw new ValidationError(`${what}: a member id is not a JSON string`);
  return id;
}

/** The canonical JSON text of the member's properties (after the id's and the hash's tabs). */
export function lineProps(line: string): string {
  const hashAt = line.indexOf("\t") + 1;
  const propsAt = line.indexOf("\t", hashAt) + 1;
  if (hashAt === 0 || propsAt === 0) throw new ValidationError("staged member line has the wrong shape");
  return line.slice(propsAt);
}

/** The member's properties, parsed (only for members that are sent or need their identity). */
export function lineRecord(line: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(lineProps(line));
  } catch {
    throw new ValidationError("staged member properties are not JSON");
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new ValidationError("staged member properties are not an object");
  // fromEntries defines own properties, so a "__proto__" key stays a property.
  return Object.fromEntries(Object.entries(raw));
}

export function lineMember(id: string, line: string): PageMember {
  return { id, props: lineRecord(line) };
}

/**
 * This run's staged members diffed against the previous snapshot (member-key order,
 * as readPrevious returns it). Hashes come from the lines. Identities: a member
 * whose property hash is unchanged has the identity it had, when the snapshot
 * records that it was picked with the same identity properties (same properties,
 * same keys, same identity); every other member's properties are parsed for it.
 */
export function diffStaged(
  rows: StagedRows,
  previous: MemberColumns,
  full: boolean,
  propHash: PropHashAlgorithm,
  identityKeys: readonly string[],
): { current: MemberColumns; diff: DiffResult } {
  const { ids } = rows;
  let hashes = rows.storedHashes;
  if (propHash !== "fnv-52") {
    // The snapshot was written with another algorithm: its hashes are computed from the stored properties.
    hashes = [];
    for (let row = 0; row < rows.count; row++) hashes.push(propertyHashOfText(lineProps(rows.line(row)), propHash));
  }
  const identities: string[] = [];
  const current: MemberColumns = { ids, hashes, identities, keyHashes: rows.keyHashes };
  const diff = diffMembers(current, previous, full);
  const keep = previous.identityKeys === JSON.stringify(identityKeys) && (previous.propHash ?? "sha1-48") === propHash;
  for (let row = 0; row < rows.count; row++) {
    const j = keep ? (diff.previousRow[row] ?? -1) : -1;
    identities.push(j >= 0 && previous.hashes[j] === hashes[row] ? (previous.identities[j] ?? "") : identityOf(lineRecord(rows.line(row)), identityKeys));
  }
  return { current, diff };
}

/**
 * Staged pages or partition chunks as the diff reads them, on their bytes: per member
 * its id, its id hash (snapshot.ts idHash) and the property hash its line stores, read
 * without decoding the line; the line itself is decoded only for the few members whose
 * properties are needed (sent, or an identity to pick). Decoding every line to a
 * string and slicing it was a third of the diff step (issue 12 profile).
 */
export class StagedRows {
  readonly ids: string[] = [];
  readonly keyHashes: number[] = [];
  /** The fnv-52 property hash each line stores. */
  readonly storedHashes: number[] = [];
  private readonly sources: Buffer[] = [];
  /** Per row: (source, start, end) of its line, end excluding the newline. */
  private readonly spans: number[] = [];

  get count(): number {
    return this.ids.length;
  }

  /**
   * Appends the members of a stored staged object (v2 lines, or a v1 document turned into
   * them) in id-hash order, stably (lines of one id keep their order, so the first still wins):
   * the diff merges them with the snapshot in that order (snapshot.ts diffMembers), and
   * strings made in that order are read front to back there, not a cache miss each.
   */
  add(data: Uint8Array, what: string): this {
    const bytes = v2Bytes(data, what);
    const source = this.sources.push(bytes) - 1;
    // Per line: where it starts, where its id ends (the tab) and where it ends, and whether its id is plain ASCII.
    const lineFields: number[] = [];
    const keyHashes: number[] = [];
    let start = HEADER_BYTES.length;
    while (start < bytes.length) {
      let end = bytes.indexOf(10, start);
      if (end < 0) end = bytes.length;
      if (end > start) {
        const tab = idEnd(bytes, start, end, what);
        const plainHash = idHashOfAsciiBytes(bytes, start + 1, tab - 1);
        lineFields.push(start, tab, end, plainHash >= 0 ? 1 : 0);
        keyHashes.push(plainHash >= 0 ? plainHash : idHash(lineId(bytes.toString("utf8", start, end), what)));
      }
      start = end + 1;
    }
    for (const i of rowsInHashOrder(keyHashes, keyHashes.length)) {
      const lineStart = lineFields[4 * i] ?? 0;
      const tab = lineFields[4 * i + 1] ?? 0;
      const end = lineFields[4 * i + 2] ?? 0;
      const plain = lineFields[4 * i + 3] === 1;
      this.ids.push(plain ? bytes.toString("latin1", lineStart + 1, tab - 1) : lineId(bytes.toString("utf8", lineStart, end), what));
      this.keyHashes.push(keyHashes[i] ?? 0);
      this.storedHashes.push(storedHash(bytes, tab, end, what));
      this.spans.push(source, lineStart, end);
    }
    return this;
  }

  /** The row's v2 line. */
  line(row: number): string {
    const k = 3 * row;
    return this.sources[this.spans[k] ?? 0]?.toString("utf8", this.spans[k + 1], this.spans[k + 2]) ?? "";
  }
}

/** The property hash a v2 line stores: decimal digits from after the id's tab up to the next tab. */
function storedHash(bytes: Buffer, tab: number, end: number, what: string): number {
  let hash = 0;
  let at = tab + 1;
  for (; at < end; at++) {
    const digit = (bytes[at] ?? 0) - 48;
    if (digit < 0 || digit > 9) break;
    hash = hash * 10 + digit;
  }
  if (at === tab + 1 || at >= end || bytes[at] !== 9 || !Number.isSafeInteger(hash)) throw new ValidationError(`${what}: a staged member line has no property hash`);
  return hash;
}

/** A v1 object (gzipped JSON) or any other text, as v2 bytes; a v2 object as it is. */
function v2Bytes(data: Uint8Array, what: string): Buffer {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (bytes.length >= HEADER_BYTES.length && bytes.compare(HEADER_BYTES, 0, HEADER_BYTES.length, 0, HEADER_BYTES.length) === 0) return bytes;
  // Not v2 lines: the text reader names what is wrong (or reads a v1 document).
  return Buffer.from(stagedText(parseStagedText(stagedObjectText(bytes, what), what).lines));
}

/** The tab that ends a v2 line's id (a JSON string); throws when the line has none. */
function idEnd(bytes: Buffer, start: number, end: number, what: string): number {
  let tab = start;
  while (tab < end && bytes[tab] !== 9) tab++;
  if (tab >= end || tab - start < 2 || bytes[start] !== 34 || bytes[tab - 1] !== 34) throw new ValidationError(`${what}: a member line has no id`);
  return tab;
}

/**
 * The spill step's split of staged objects by partition, on their bytes: a v2 line is
 * copied to its partition without being decoded to a string, and its id hash (FNV-1a
 * over UTF-16 code units, snapshot.ts idHash) is taken over the id's bytes, which are
 * those code units when the id is ASCII without escapes (nearly always); any other id
 * is decoded and hashed as a string. v1 objects (gzipped JSON) are turned into lines first.
 */
/** idHash of the id of the v2 line bytes[start, end). */
function lineIdHash(bytes: Buffer, start: number, end: number, what: string): number {
  const tab = idEnd(bytes, start, end, what);
  const plainHash = idHashOfAsciiBytes(bytes, start + 1, tab - 1);
  return plainHash >= 0 ? plainHash : idHash(lineId(bytes.toString("utf8", start, end), what));
}

export class PartitionSplitter {
  private readonly sources: Buffer[] = [];
  /** Per partition: (source, start, end) of each line, end excluding the newline. */
  private readonly spans: number[][];

  constructor(
    parts: number,
    private readonly partitionOfHash: (keyHash: number) => number,
  ) {
    this.spans = Array.from({ length: parts }, () => []);
  }

  add(data: Uint8Array, what: string): void {
    const bytes = v2Bytes(data, what);
    const source = this.sources.push(bytes) - 1;
    let start = HEADER_BYTES.length;
    while (start < bytes.length) {
      let end = bytes.indexOf(10, start);
      if (end < 0) end = bytes.length;
      if (end > start) {
        const spans = this.spans[this.partitionOfHash(lineIdHash(bytes, start, end, what))];
        const last = spans ? spans.length - 3 : -1;
        // The line right after this partition's last one (same object): one longer copy, newline included.
        if (spans && last >= 0 && spans[last] === source && spans[last + 2] === start - 1) spans[last + 2] = end;
        else spans?.push(source, start, end);
      }
      start = end + 1;
    }
  }

  /** Partition `part`'s lines as a v2 object. */
  object(part: number): Buffer {
    const spans = this.spans[part] ?? [];
    let size = HEADER_BYTES.length;
    for (let k = 0; k < spans.length; k += 3) size += (spans[k + 2] ?? 0) - (spans[k + 1] ?? 0) + 1;
    const out = Buffer.allocUnsafe(size);
    let at = HEADER_BYTES.copy(out, 0);
    for (let k = 0; k < spans.length; k += 3) {
      const start = spans[k + 1] ?? 0;
      const end = spans[k + 2] ?? 0;
      // Uint8Array#set, not Buffer#copy: the same copy without its argument checks per line.
      const source = this.sources[spans[k] ?? 0];
      if (source) out.set(source.subarray(start, end), at);
      at += end - start;
      out[at++] = 10;
    }
    return out;
  }
}

const HEADER_BYTES = Buffer.from(`${STAGED_HEADER}\n`);
