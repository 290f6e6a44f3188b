import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { idHash } from "../../../lib/cohorts/hash.js";
import { partitionOf } from "../../../lib/cohorts/partition-layout.js";
import { PartitionSplitter } from "../../../lib/cohorts/partition-splitter.js";
import { lineId, parseStagedText } from "../../../lib/cohorts/staged-line-reader.js";
import { StagedPageWriter } from "../../../lib/cohorts/staged-page-writer.js";

const writer = new StagedPageWriter();

// Ids a v3 entry must escape (leading quote, newline, lone and paired surrogates) and ones it stores as they are.
const hostileId = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.string({ unit: "binary", maxLength: 6 }),
  fc.constantFrom('"quoted', 'a"b', "a\\b", "n\nl", "\r\n", "lone\ud800", "\udc00x", "emoji😀", "é", "\u2028", "", '"', "\\"),
);

describe("spill on bytes", () => {
  it("puts every staged line in the partition of its id hash, as the string path would, and keeps the lines as they are", () => {
    fc.assert(
      fc.property(fc.array(fc.record({ id: hostileId, props: fc.dictionary(fc.string({ maxLength: 4 }), fc.string({ maxLength: 4 }), { maxKeys: 3 }) }), { maxLength: 20 }), fc.integer({ min: 1, max: 5 }), (members, parts) => {
        const text = writer.pageText(members);
        const splitter = new PartitionSplitter(parts, (h) => partitionOf(h, parts));
        splitter.add(Buffer.from(text), "page");
        const rows = parseStagedText(text, "page");
        for (let p = 0; p < parts; p++) {
          const expected = rows.lines.filter((_, i) => partitionOf(idHash(rows.ids[i] ?? ""), parts) === p);
          const got = parseStagedText(splitter.object(p).toString("utf8"), "chunk");
          expect(got.lines).toEqual(expected);
          expect(got.ids).toEqual(got.lines.map((line) => lineId(line, "x")));
        }
      }),
    );
  });
});
