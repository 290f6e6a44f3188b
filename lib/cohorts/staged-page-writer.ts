import { canonicalJson } from "../util/json.js";
import { JsonByteWriter } from "../util/json-byte-writer.js";
import { propertyHashOfAsciiBytes, propertyHashOfPieces } from "./hash.js";
import type { PageMember } from "./messages.js";
import { STAGED_HEADER, stagedText } from "./staged-format.js";

/**
 * Writes members as staged lines (staged-format.ts). An instance keeps what repeats
 * from member to member and page to page: the last key list and its sorted order (the
 * members of a page share their keys), the `"key":` text of recent keys, and one
 * member's property bytes while they are written. Its owner keeps one per store; the
 * methods are synchronous, so concurrent stagings never share the scratch bytes mid-use.
 */
export class StagedPageWriter {
  private lastKeys: string[] = [];
  private lastSorted: string[] = [];
  /** `"key":` per key for the keys of the last few pages, bounded: keys come from Mixpanel profiles. */
  private readonly keyPrefixes = new Map<string, string>();
  /** One member's properties while they are written. */
  private readonly props = new JsonByteWriter(4096);

  /** The member's staged line (without the newline). */
  line(member: PageMember): string {
    const pieces = this.canonicalPieces(member.props);
    let length = 0;
    for (const piece of pieces) length += piece.length;
    return `${JSON.stringify(member.id)}\t${propertyHashOfPieces(pieces, length)}\t${pieces.join("")}`;
  }

  /** A page of members as text: the definition pageBytes' bytes are held to (its tests), and what tests stage by hand. */
  pageText(members: readonly PageMember[]): string {
    return stagedText(members.map((member) => this.line(member)));
  }

  /**
   * The UTF-8 bytes of pageText(members), written straight into a buffer: a member whose
   * id and string values are printable ASCII without `"` or `\` (nearly every profile) is
   * copied character by character and hashed over those bytes, which for ASCII are the
   * UTF-16 code units propertyHashOfPieces reads; any other member is written by line().
   * Building each line as strings, joining them and encoding the page cost several times
   * as much per member.
   */
  pageBytes(members: readonly PageMember[]): Buffer {
    const out = new JsonByteWriter(256 + members.length * 160);
    out.ascii(STAGED_HEADER);
    out.byte(10);
    for (const member of members) {
      if (!this.writePlainLine(out, member)) {
        out.utf8(this.line(member));
      }
      out.byte(10);
    }
    return out.result();
  }

  /** The member's line, when it is plain (see pageBytes); false, with nothing written, otherwise. */
  private writePlainLine(out: JsonByteWriter, member: PageMember): boolean {
    const props = this.props;
    props.reset();
    const record = member.props;
    props.byte(123); // {
    let first = true;
    for (const key of this.sortedKeysOf(record)) {
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

  /**
   * canonicalJson(record) (util/json.ts) as its parts: "{", then `"key":` and the value's
   * JSON per key in sorted order with "," between, then "}". The joined parts are the same
   * text, so the property hash is the one stored snapshots hold; writing the top level by
   * hand costs about a third of canonicalJson's sorted copy and JSON.stringify for the flat
   * property objects /engage returns, and the parts are hashed without joining them first.
   * Values other than strings, numbers, booleans and null are written by canonicalJson.
   */
  private canonicalPieces(record: Record<string, unknown>): string[] {
    const sorted = this.sortedKeysOf(record);
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
      pieces.push(this.keyPrefix(key), text);
    }
    pieces.push("}");
    return pieces;
  }

  private sortedKeysOf(record: Record<string, unknown>): string[] {
    const keys = Object.keys(record);
    if (keys.length === this.lastKeys.length) {
      let same = true;
      for (let i = 0; i < keys.length && same; i++) same = keys[i] === this.lastKeys[i];
      if (same) return this.lastSorted;
    }
    this.lastKeys = keys;
    // Default sort: UTF-16 code unit order, as canonicalJson sorts.
    this.lastSorted = [...keys].sort();
    return this.lastSorted;
  }

  private keyPrefix(key: string): string {
    const cached = this.keyPrefixes.get(key);
    if (cached !== undefined) return cached;
    const prefix = `${JSON.stringify(key)}:`;
    if (this.keyPrefixes.size >= 4096) this.keyPrefixes.clear();
    if (key.length <= 128) this.keyPrefixes.set(key, prefix);
    return prefix;
  }
}
