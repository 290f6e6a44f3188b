import { rowsSortedByUint32Key } from "../util/radix-sort.js";
import { idHash, idHashOfAsciiBytes } from "./hash.js";
import { STAGED_HEADER_BYTES } from "./staged-format.js";
import { lineId, lineIdEnd, lineStoredHash, stagedObjectBytes } from "./staged-line-reader.js";

/**
 * Staged pages or partition chunks (staged-format.ts) as the diff reads them, on their
 * bytes: per member its id, its id hash (hash.ts idHash) and the property hash its line
 * stores, read without decoding the line; the line itself is decoded only for the few
 * members whose properties are needed (sent, or an identity to pick). Decoding every
 * line to a string and slicing it cost a third of the diff step.
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
   * the diff merges them with the snapshot in that order (diff.ts diffMembers), and
   * strings made in that order are read front to back there, not a cache miss each.
   */
  add(data: Uint8Array, what: string): this {
    const bytes = stagedObjectBytes(data, what);
    const source = this.sources.push(bytes) - 1;
    // Per line: where it starts, where its id ends (the tab) and where it ends, and whether its id is plain ASCII.
    const lineFields: number[] = [];
    const keyHashes: number[] = [];
    let start = STAGED_HEADER_BYTES.length;
    while (start < bytes.length) {
      let end = bytes.indexOf(10, start);
      if (end < 0) end = bytes.length;
      if (end > start) {
        const tab = lineIdEnd(bytes, start, end, what);
        const plainHash = idHashOfAsciiBytes(bytes, start + 1, tab - 1);
        lineFields.push(start, tab, end, plainHash >= 0 ? 1 : 0);
        keyHashes.push(plainHash >= 0 ? plainHash : idHash(lineId(bytes.toString("utf8", start, end), what)));
      }
      start = end + 1;
    }
    for (const i of rowsSortedByUint32Key(keyHashes, keyHashes.length)) {
      const lineStart = lineFields[4 * i] ?? 0;
      const tab = lineFields[4 * i + 1] ?? 0;
      const end = lineFields[4 * i + 2] ?? 0;
      const plain = lineFields[4 * i + 3] === 1;
      this.ids.push(plain ? bytes.toString("latin1", lineStart + 1, tab - 1) : lineId(bytes.toString("utf8", lineStart, end), what));
      this.keyHashes.push(keyHashes[i] ?? 0);
      this.storedHashes.push(lineStoredHash(bytes, tab, end, what));
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
