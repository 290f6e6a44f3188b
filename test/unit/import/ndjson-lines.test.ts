import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ndjsonLines } from "../../../lib/import/stream-formats.js";

async function collect(chunks: readonly Buffer[], maxLineBytes?: number) {
  const out: unknown[] = [];
  for await (const line of ndjsonLines((async function* () { yield* chunks; })(), maxLineBytes)) out.push(line);
  return out;
}

/** `bytes` cut at the given offsets (any byte: inside a multi-byte character or between \r and \n too). */
function cut(bytes: Buffer, offsets: readonly number[]): Buffer[] {
  const points = [...new Set(offsets.map((offset) => offset % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const point of [...points, bytes.length]) {
    if (point > from) chunks.push(bytes.subarray(from, point));
    from = Math.max(from, point);
  }
  return chunks;
}

describe("ndjsonLines", () => {
  it("gives the lines as written, however the bytes are chunked, with \\r\\n or \\n endings", async () => {
    const lineText = fc.string({ unit: "grapheme", maxLength: 20 }).map((text) => text.replace(/[\r\n]/g, ""));
    await fc.assert(
      fc.asyncProperty(fc.array(lineText, { minLength: 1, maxLength: 12 }), fc.boolean(), fc.boolean(), fc.array(fc.nat(), { maxLength: 12 }), async (lines, crlf, trailing, offsets) => {
        const text = lines.join(crlf ? "\r\n" : "\n") + (trailing ? "\n" : "");
        const got = await collect(cut(Buffer.from(text), offsets));
        const expected = trailing || lines.at(-1) !== "" ? lines : lines.slice(0, -1);
        expect(got).toEqual(expected.map((line) => ({ text: line })));
      }),
      { seed: 23, numRuns: 300 },
    );
  });

  it("refuses a line past the limit without holding it, and goes on with the next", async () => {
    const long = "x".repeat(100);
    expect(await collect(cut(Buffer.from(`\ufeff{"a":1}\n${long}\n{"b":2}\n${long}`), [3, 20, 50, 90, 130]), 64)).toEqual([{ text: '{"a":1}' }, { tooLong: 100 }, { text: '{"b":2}' }, { tooLong: 100 }]);
  });
});
