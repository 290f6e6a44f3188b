import { gunzipSync } from "node:zlib";
import { ValidationError } from "../util/errors.js";
import { parseJsonOrThrow, parseJsonOrUndefined } from "../util/json.js";
import { idHash, idHashOfAsciiBytes } from "./hash.js";
import { type PageMember, parseMembers } from "./messages.js";
import { STAGED_HEADER, STAGED_HEADER_BYTES, stagedText } from "./staged-format.js";
import { StagedPageWriter } from "./staged-page-writer.js";

/**
 * Reading staged objects (staged-format.ts): as text, and the fields of one line, as
 * strings or straight from the stored bytes.
 */

/** Staged members as text: their ids and v2 lines (parseStagedText). */
export interface StagedLines {
  readonly ids: string[];
  /** One v2 line per member (without the newline). */
  readonly lines: string[];
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
    const raw = parseJsonOrThrow(text, () => new ValidationError(`${what} is not a staged page`));
    const list = raw !== null && typeof raw === "object" ? Reflect.get(raw, "members") : undefined;
    // A v1 document is rare (a run staged by an earlier deploy): a writer of its own suffices.
    const writer = new StagedPageWriter();
    for (const member of parseMembers(list, what)) {
      into.ids.push(member.id);
      into.lines.push(writer.line(member));
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
  // Not JSON reads as undefined, which is not a string either.
  const id = parseJsonOrUndefined(text);
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
  const raw = parseJsonOrThrow(lineProps(line), () => new ValidationError("staged member properties are not JSON"));
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new ValidationError("staged member properties are not an object");
  // fromEntries defines own properties, so a "__proto__" key stays a property.
  return Object.fromEntries(Object.entries(raw));
}

export function lineMember(id: string, line: string): PageMember {
  return { id, props: lineRecord(line) };
}

/** A v1 object (gzipped JSON) or any other text, as v2 bytes; a v2 object as it is. */
export function stagedObjectBytes(data: Uint8Array, what: string): Buffer {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (bytes.length >= STAGED_HEADER_BYTES.length && bytes.compare(STAGED_HEADER_BYTES, 0, STAGED_HEADER_BYTES.length, 0, STAGED_HEADER_BYTES.length) === 0) return bytes;
  // Not v2 lines: the text reader names what is wrong (or reads a v1 document).
  return Buffer.from(stagedText(parseStagedText(stagedObjectText(bytes, what), what).lines));
}

/** The tab that ends the id (a JSON string) of the v2 line bytes[start, end); throws when the line has none. */
export function lineIdEnd(bytes: Buffer, start: number, end: number, what: string): number {
  let tab = start;
  while (tab < end && bytes[tab] !== 9) tab++;
  if (tab >= end || tab - start < 2 || bytes[start] !== 34 || bytes[tab - 1] !== 34) throw new ValidationError(`${what}: a member line has no id`);
  return tab;
}

/**
 * idHash of the id of the v2 line bytes[start, end), taken over the id's bytes, which
 * are its UTF-16 code units when the id is ASCII without escapes (nearly always); any
 * other id is decoded and hashed as a string.
 */
export function lineIdHash(bytes: Buffer, start: number, end: number, what: string): number {
  const tab = lineIdEnd(bytes, start, end, what);
  const plainHash = idHashOfAsciiBytes(bytes, start + 1, tab - 1);
  return plainHash >= 0 ? plainHash : idHash(lineId(bytes.toString("utf8", start, end), what));
}

/** The property hash a v2 line stores: decimal digits from after the id's tab up to the next tab. */
export function lineStoredHash(bytes: Buffer, tab: number, end: number, what: string): number {
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
