import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { idHash } from "../../../lib/cohorts/hash.js";
import { STAGED_HEADER } from "../../../lib/cohorts/staged-format.js";
import { parseStagedText } from "../../../lib/cohorts/staged-line-reader.js";
import { StagedPageWriter } from "../../../lib/cohorts/staged-page-writer.js";
import { StagedRows } from "../../../lib/cohorts/staged-rows.js";
import { memberId, memberProps, storedHashOf } from "../../support/cohort-members.js";

const writer = new StagedPageWriter();

const props = memberProps(5);

describe("staged rows (v2 lines)", () => {
  it("reads staged objects on their bytes as the text reader reads them, each object's members in id-hash order (stable): ids, lines, id hashes, stored property hashes", () => {
    // Ids that share a hash ("costarring"/"liquid"), and duplicates, keep their order within an object.
    const id = fc.oneof(memberId, fc.constantFrom("costarring", "liquid", "a"));
    fc.assert(
      fc.property(fc.array(fc.array(fc.record({ id, props }), { maxLength: 6 }), { maxLength: 3 }), (pages) => {
        const rows = new StagedRows();
        const expected = { ids: [] as string[], lines: [] as string[] };
        for (const members of pages) {
          rows.add(writer.pageBytes(members), "page");
          const text = parseStagedText(writer.pageText(members), "page");
          // Array#sort is stable.
          const order = text.ids.map((_, row) => row).sort((a, b) => idHash(text.ids[a]!) - idHash(text.ids[b]!));
          for (const row of order) {
            expected.ids.push(text.ids[row]!);
            expected.lines.push(text.lines[row]!);
          }
        }
        expect(rows.count).toBe(expected.ids.length);
        expect(rows.ids).toEqual(expected.ids);
        expect(expected.lines.map((_, row) => rows.line(row))).toEqual(expected.lines);
        expect(rows.keyHashes).toEqual(expected.ids.map(idHash));
        expect(rows.storedHashes).toEqual(expected.lines.map(storedHashOf));
      }),
      { numRuns: 300 },
    );
  });

  it("reads a v1 object (gzipped JSON) on the byte path too, and refuses lines without an id or a property hash", () => {
    const members = [{ id: "a", props: { b: 1 } }, { id: 'q"x', props: {} }];
    const v1 = new StagedRows().add(gzipSync(JSON.stringify({ members })), "v1");
    expect(v1.ids).toEqual(["a", 'q"x']);
    expect(v1.line(0)).toBe(writer.line(members[0]!));
    const page = (line: string) => () => new StagedRows().add(Buffer.from(`${STAGED_HEADER}\n${line}\n`), "bad");
    expect(page('"a"\t\t{}')).toThrow(/no property hash/);
    expect(page('"a"\t12x\t{}')).toThrow(/no property hash/);
    expect(page('"a"\t12')).toThrow(/no property hash/);
    expect(page('"a"\t99999999999999999\t{}')).toThrow(/no property hash/);
    expect(page('a\t1\t{}')).toThrow(/no id/);
    expect(page('"a"')).toThrow(/no id/);
    expect(new StagedRows().add(Buffer.from(`${STAGED_HEADER}\n"a"\t7\t{}\n`), "ok").storedHashes).toEqual([7]);
  });

});
