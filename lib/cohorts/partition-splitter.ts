import { STAGED_HEADER_BYTES } from "./staged-format.js";
import { lineIdHash, stagedObjectBytes } from "./staged-line-reader.js";

/**
 * The spill step's split of staged objects (staged-format.ts) by partition, on their
 * bytes: a v2 line is copied to the partition of its id hash without being decoded to a
 * string (staged-line-reader.ts lineIdHash). v1 objects (gzipped JSON) are turned into
 * lines first.
 */
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
    const bytes = stagedObjectBytes(data, what);
    const source = this.sources.push(bytes) - 1;
    let start = STAGED_HEADER_BYTES.length;
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
    let size = STAGED_HEADER_BYTES.length;
    for (let k = 0; k < spans.length; k += 3) size += (spans[k + 2] ?? 0) - (spans[k + 1] ?? 0) + 1;
    const out = Buffer.allocUnsafe(size);
    let at = STAGED_HEADER_BYTES.copy(out, 0);
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
