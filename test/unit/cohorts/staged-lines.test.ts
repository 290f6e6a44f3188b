import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalJson } from "../../../lib/util/json.js";
import { propertyHash, propertyHashOfText } from "../../../lib/cohorts/hash.js";
import { stagedText } from "../../../lib/cohorts/staged-format.js";
import { lineMember, lineProps, parseStagedText, stagedObjectText } from "../../../lib/cohorts/staged-line-reader.js";
import { StagedPageWriter } from "../../../lib/cohorts/staged-page-writer.js";
import { hostileMemberId, memberId, memberProps, storedHashOf } from "../../support/cohort-members.js";

const writer = new StagedPageWriter();

const jsonValue = fc.jsonValue({ maxDepth: 2 });
const props = memberProps(5);

describe("staged rows (v2 lines)", () => {
  it("round-trips any member: id, properties, and the same hashes as propertyHash of the parsed properties", () => {
    fc.assert(
      fc.property(fc.array(fc.record({ id: memberId, props }), { maxLength: 8 }), (members) => {
        const rows = parseStagedText(writer.pageText(members), "test");
        expect(rows.ids).toEqual(members.map((m) => m.id));
        rows.lines.forEach((line, i) => {
          const original = members[i]!;
          const parsed = lineMember(rows.ids[i]!, line);
          expect(canonicalJson(parsed.props)).toBe(canonicalJson(original.props));
          expect(lineProps(line)).toBe(canonicalJson(original.props));
          expect(storedHashOf(line)).toBe(propertyHash(original.props, "fnv-52"));
          expect(propertyHashOfText(lineProps(line), "sha1-48")).toBe(propertyHash(original.props, "sha1-48"));
        });
      }),
    );
  });

  it("writes a page as bytes that are exactly the UTF-8 of its text, for plain members and every other kind", () => {
    // Plain ASCII keys and values (the byte path) mixed with escapes, non-ASCII, nested values, huge and odd numbers (the line path).
    const plainText = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 12 });
    const number = fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.double(), fc.constantFrom(-0, 2 ** 53, -(2 ** 53) - 2, 1e21, 1e-7, 99_999_999, 100_000_000, Number.NaN, Infinity));
    const value = fc.oneof(plainText, number, fc.boolean(), fc.constant(null), fc.constant(undefined), jsonValue);
    const member = fc.record({
      id: fc.oneof(plainText, memberId),
      props: fc.oneof(fc.dictionary(plainText, value, { maxKeys: 6 }), props),
    });
    fc.assert(
      fc.property(fc.array(member, { maxLength: 6 }), (members) => {
        expect(writer.pageBytes(members).equals(Buffer.from(writer.pageText(members), "utf8"))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it("writes a page larger than its first buffer guess (a member with long values) whole", () => {
    const members = [
      { id: "a", props: { note: "x".repeat(300_000), n: 12_345_678_901 } },
      { id: "b", props: { note: "é".repeat(10), ok: true } },
    ];
    expect(writer.pageBytes(members).equals(Buffer.from(writer.pageText(members), "utf8"))).toBe(true);
  });

  it("reads a v1 object (gzipped {members}) from before the deploy as the same lines", () => {
    const members = [
      { id: "a", props: { b: 1, a: "x" } },
      { id: "q\"uote", props: { $email: "q@x" } },
    ];
    const v1 = gzipSync(JSON.stringify({ members }));
    const rows = parseStagedText(stagedObjectText(v1, "v1"), "v1");
    expect(rows.ids).toEqual(["a", 'q"uote']);
    expect(rows.lines).toEqual(members.map((m) => writer.line(m)));
    // A v2 object is plain text.
    const v2 = Buffer.from(stagedText(members.map((m) => writer.line(m))));
    expect(parseStagedText(stagedObjectText(v2, "v2"), "v2")).toEqual(rows);
  });

  it("refuses text that is neither", () => {
    expect(() => parseStagedText("not json", "x")).toThrow(/not a staged page/);
    expect(() => parseStagedText('{"members":[{"id":1}]}', "x")).toThrow(/wrong shape/);
    expect(() => parseStagedText('{"staged":2}\nno-tab-here\n', "x")).toThrow(/no id/);
  });
});

describe("across the deploy", () => {
  const props = memberProps(6);
  const hostileId = hostileMemberId;

  it("a staged line's hash is propertyHash of canonicalJson, for any properties (the hash snapshots store)", () => {
    fc.assert(
      fc.property(hostileId, props, (id, p) => {
        const line = writer.line({ id, props: p });
        expect(line.slice(line.indexOf("\t") + 1)).toBe(`${propertyHash(p)}\t${canonicalJson(p)}`);
      }),
    );
  });
});
