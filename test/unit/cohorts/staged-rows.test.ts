import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalJson } from "../../../lib/util/json.js";
import {
  type MemberColumns,
  compareKeys,
  decodeSnapshot,
  diffMembers,
  encodeSnapshot,
  idHash,
  identityOf,
  propertyHash,
  propertyHashOfText,
  sortedUniqueRows,
} from "../../../lib/cohorts/snapshot.js";
import {
  StagedRows,
  diffStaged,
  lineMember,
  lineProps,
  parseStagedText,
  stagedLine,
  STAGED_HEADER,
  stagedObjectText,
  stagedPageBytes,
  stagedText,
  stagedTextOfMembers,
} from "../../../lib/cohorts/staged-rows.js";

/** The property hash field of a v2 line (a JSON id and JSON properties never hold a raw tab). */
const storedHashOf = (line: string): number => Number(line.split("\t")[1]);

const jsonValue = fc.jsonValue({ maxDepth: 2 });
const props = fc.dictionary(fc.string({ maxLength: 6 }), jsonValue, { maxKeys: 5 });
// Ids with the characters a JSON string escapes (quote, backslash, tab, newline) and non-ASCII.
const memberId = fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('a"b', "a\\b", "t\tab", "n\nl", "é", "\u2028", ""));

describe("staged rows (v2 lines)", () => {
  it("round-trips any member: id, properties, and the same hashes as propertyHash of the parsed properties", () => {
    fc.assert(
      fc.property(fc.array(fc.record({ id: memberId, props }), { maxLength: 8 }), (members) => {
        const rows = parseStagedText(stagedTextOfMembers(members), "test");
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
        expect(stagedPageBytes(members).equals(Buffer.from(stagedTextOfMembers(members), "utf8"))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it("reads staged objects on their bytes as the text reader reads them, each object's members in id-hash order (stable): ids, lines, id hashes, stored property hashes", () => {
    // Ids that share a hash ("costarring"/"liquid"), and duplicates, keep their order within an object.
    const id = fc.oneof(memberId, fc.constantFrom("costarring", "liquid", "a"));
    fc.assert(
      fc.property(fc.array(fc.array(fc.record({ id, props }), { maxLength: 6 }), { maxLength: 3 }), (pages) => {
        const rows = new StagedRows();
        const expected = { ids: [] as string[], lines: [] as string[] };
        for (const members of pages) {
          rows.add(stagedPageBytes(members), "page");
          const text = parseStagedText(stagedTextOfMembers(members), "page");
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
    expect(v1.line(0)).toBe(stagedLine(members[0]!));
    const page = (line: string) => () => new StagedRows().add(Buffer.from(`${STAGED_HEADER}\n${line}\n`), "bad");
    expect(page('"a"\t\t{}')).toThrow(/no property hash/);
    expect(page('"a"\t12x\t{}')).toThrow(/no property hash/);
    expect(page('"a"\t12')).toThrow(/no property hash/);
    expect(page('"a"\t99999999999999999\t{}')).toThrow(/no property hash/);
    expect(page('a\t1\t{}')).toThrow(/no id/);
    expect(page('"a"')).toThrow(/no id/);
    expect(new StagedRows().add(Buffer.from(`${STAGED_HEADER}\n"a"\t7\t{}\n`), "ok").storedHashes).toEqual([7]);
  });

  it("writes a page larger than its first buffer guess (a member with long values) whole", () => {
    const members = [
      { id: "a", props: { note: "x".repeat(300_000), n: 12_345_678_901 } },
      { id: "b", props: { note: "é".repeat(10), ok: true } },
    ];
    expect(stagedPageBytes(members).equals(Buffer.from(stagedTextOfMembers(members), "utf8"))).toBe(true);
  });

  it("reads a v1 object (gzipped {members}) from before the deploy as the same lines", () => {
    const members = [
      { id: "a", props: { b: 1, a: "x" } },
      { id: "q\"uote", props: { $email: "q@x" } },
    ];
    const v1 = gzipSync(JSON.stringify({ members }));
    const rows = parseStagedText(stagedObjectText(v1, "v1"), "v1");
    expect(rows.ids).toEqual(["a", 'q"uote']);
    expect(rows.lines).toEqual(members.map(stagedLine));
    // A v2 object is plain text.
    const v2 = Buffer.from(stagedText(members.map(stagedLine)));
    expect(parseStagedText(stagedObjectText(v2, "v2"), "v2")).toEqual(rows);
  });

  it("refuses text that is neither", () => {
    expect(() => parseStagedText("not json", "x")).toThrow(/not a staged page/);
    expect(() => parseStagedText('{"members":[{"id":1}]}', "x")).toThrow(/wrong shape/);
    expect(() => parseStagedText('{"staged":2}\nno-tab-here\n', "x")).toThrow(/no id/);
  });
});

/** The diff by the book: first row of an id wins, previous rows not seen are removed, next = unique ids in key order. */
function referenceDiff(current: MemberColumns, previous: MemberColumns, full: boolean, keyOf: (id: string) => number = idHash) {
  const prev = new Map(previous.ids.map((id, j) => [id, j]));
  const first = new Map<string, number>();
  current.ids.forEach((id, row) => {
    if (!first.has(id)) first.set(id, row);
  });
  const send = current.ids.map((id, row) => {
    if (first.get(id) !== row) return 0;
    const j = prev.get(id);
    return j === undefined || full || previous.hashes[j] !== current.hashes[row] ? 1 : 0;
  });
  const removed = previous.ids.flatMap((id, j) => (first.has(id) ? [] : [j]));
  const next = [...first.keys()].sort((a, b) => compareKeys(keyOf(a), a, keyOf(b), b)).map((id) => first.get(id)!);
  const previousRow = current.ids.map((id, row) => (first.get(id) === row ? (prev.get(id) ?? -1) : -1));
  return { send, removed, next, previousRow };
}

describe("diffMembers", () => {
  it("matches the diff by the book for any current rows (duplicates included) and previous snapshot", () => {
    const small = fc.constantFrom("a", "b", "c", "d", "e", "f", "g", "h");
    fc.assert(
      fc.property(
        fc.array(fc.tuple(small, fc.integer({ min: 0, max: 2 })), { maxLength: 12 }),
        fc.uniqueArray(fc.tuple(small, fc.integer({ min: 0, max: 2 })), { selector: ([id]) => id, maxLength: 8 }),
        fc.boolean(),
        (cur, prevRows, full) => {
          const current: MemberColumns = { ids: cur.map(([id]) => id), hashes: cur.map(([, h]) => h), identities: cur.map(() => "") };
          const unsorted: MemberColumns = { ids: prevRows.map(([id]) => id), hashes: prevRows.map(([, h]) => h), identities: prevRows.map(() => "") };
          const order = sortedUniqueRows(unsorted);
          const previous: MemberColumns = {
            ids: Array.from(order, (r) => unsorted.ids[r]!),
            hashes: Array.from(order, (r) => unsorted.hashes[r]!),
            identities: Array.from(order, () => ""),
          };
          const diff = diffMembers(current, previous, full);
          const expected = referenceDiff(current, previous, full);
          expect([...diff.send]).toEqual(expected.send);
          expect(diff.sendCount).toBe(expected.send.filter((x) => x === 1).length);
          expect(diff.removedRows).toEqual(expected.removed);
          expect([...diff.nextSnapshotRows]).toEqual(expected.next);
          expect([...diff.previousRow]).toEqual(expected.previousRow);
        },
      ),
    );
  });

  it("matches it where ids share a hash: real FNV-1a collisions, and key hashes forced to a few values", () => {
    // "costarring"/"liquid" and "declinate"/"macallums" have the same FNV-1a 32 hash (idHash).
    const colliding = fc.constantFrom("costarring", "liquid", "declinate", "macallums", "a", "b", "c");
    fc.assert(
      fc.property(
        fc.array(fc.tuple(colliding, fc.integer({ min: 0, max: 1 })), { maxLength: 14 }),
        fc.uniqueArray(fc.tuple(colliding, fc.integer({ min: 0, max: 1 })), { selector: ([id]) => id, maxLength: 7 }),
        fc.boolean(),
        fc.boolean(),
        (cur, prevRows, full, forced) => {
          // Forced: a reader's key hashes (MemberColumns.keyHashes) where most ids collide.
          const keyOf = forced ? (id: string) => id.length % 3 : idHash;
          const current: MemberColumns = { ids: cur.map(([id]) => id), hashes: cur.map(([, h]) => h), identities: cur.map(() => ""), keyHashes: cur.map(([id]) => keyOf(id)) };
          const sortedPrev = [...prevRows].sort(([a], [b]) => compareKeys(keyOf(a), a, keyOf(b), b));
          const previous: MemberColumns = {
            ids: sortedPrev.map(([id]) => id),
            hashes: sortedPrev.map(([, h]) => h),
            identities: sortedPrev.map(() => ""),
            keyHashes: sortedPrev.map(([id]) => keyOf(id)),
          };
          const diff = diffMembers(current, previous, full);
          const expected = referenceDiff(current, previous, full, keyOf);
          expect([...diff.send]).toEqual(expected.send);
          expect(diff.sendCount).toBe(expected.send.filter((x) => x === 1).length);
          expect(diff.removedRows).toEqual(expected.removed);
          expect([...diff.nextSnapshotRows]).toEqual(expected.next);
          expect([...diff.previousRow]).toEqual(expected.previousRow);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("diffStaged identities", () => {
  const snapshotOf = async (members: { id: string; props: Record<string, unknown> }[], keys: string[] | undefined) => {
    const cols: MemberColumns = {
      ids: members.map((m) => m.id),
      hashes: members.map((m) => propertyHash(m.props)),
      identities: members.map((m) => identityOf(m.props, ["$email"])),
    };
    const header = { v: 2 as const, sync_id: "s", cohort_id: 1, run_id: "r", created_at: "", count: 0, ...(keys ? { identity_keys: keys } : {}) };
    return (await decodeSnapshot(await encodeSnapshot(header, cols, sortedUniqueRows(cols)))).columns;
  };
  const staged = (members: { id: string; props: Record<string, unknown> }[]) => new StagedRows().add(stagedPageBytes(members), "t");

  it("keeps an unchanged member's identity from the snapshot only when it was picked with the same identity properties", async () => {
    // The snapshot's identity for "a" differs from what its properties give under ["$email", "ext"]:
    // kept when the header says ["$email"] and the sync still uses ["$email"]; recomputed otherwise.
    const members = [{ id: "a", props: { $email: "a@x", ext: "E1" } }];
    const sameKeys = await snapshotOf(members, ["$email"]);
    expect(diffStaged(staged(members), sameKeys, false, "fnv-52", ["$email"]).current.identities).toEqual(['{"$email":"a@x"}']);
    expect(diffStaged(staged(members), sameKeys, false, "fnv-52", ["$email", "ext"]).current.identities).toEqual(['{"$email":"a@x","ext":"E1"}']);
    // A snapshot written before identity_keys were recorded: every identity is computed.
    const legacy = await snapshotOf(members, undefined);
    expect(legacy.identityKeys).toBeUndefined();
    expect(diffStaged(staged(members), legacy, false, "fnv-52", ["$email", "ext"]).current.identities).toEqual(['{"$email":"a@x","ext":"E1"}']);
  });

  it("recomputes the identity of a member whose properties changed", async () => {
    const before = await snapshotOf([{ id: "a", props: { $email: "old@x" } }], ["$email"]);
    const { current, diff } = diffStaged(staged([{ id: "a", props: { $email: "new@x" } }]), before, false, "fnv-52", ["$email"]);
    expect(current.identities).toEqual(['{"$email":"new@x"}']);
    expect([...diff.send]).toEqual([1]);
  });

  it("a sha1-48 snapshot (first release) is diffed with sha1-48 hashes of the staged text: nothing unchanged is re-sent", async () => {
    const members = [{ id: "a", props: { z: 1, $email: "a@x" } }, { id: "b", props: { $email: "b@x" } }];
    const cols: MemberColumns = { ids: ["a", "b"], hashes: members.map((m) => propertyHash(m.props, "sha1-48")), identities: ["", ""] };
    const header = { v: 2 as const, sync_id: "s", cohort_id: 1, run_id: "r", created_at: "", count: 0, prop_hash: "sha1-48" as const };
    const previous = (await decodeSnapshot(await encodeSnapshot(header, cols, sortedUniqueRows(cols)))).columns;
    expect(previous.propHash).toBe("sha1-48");
    const { diff } = diffStaged(staged(members), previous, false, "sha1-48", ["$email"]);
    expect(diff.sendCount).toBe(0);
  });
});

describe("snapshot lines", () => {
  it("decode reads back whatever encode wrote (ids and identities with escapes, any 52-bit hash)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.tuple(memberId, fc.integer({ min: 0, max: 2 ** 52 - 1 }), fc.oneof(fc.constant(""), fc.string({ maxLength: 6 }), fc.json())), {
          selector: ([id]) => id,
          maxLength: 10,
        }),
        async (rows) => {
          const cols: MemberColumns = { ids: rows.map(([id]) => id), hashes: rows.map(([, h]) => h), identities: rows.map(([, , i]) => i) };
          const order = sortedUniqueRows(cols);
          const header = { v: 2 as const, sync_id: "s", cohort_id: 1, run_id: "r", created_at: "", count: 0 };
          const { columns } = await decodeSnapshot(await encodeSnapshot(header, cols, order));
          expect(columns.ids).toEqual(Array.from(order, (r) => cols.ids[r]));
          expect(columns.hashes).toEqual(Array.from(order, (r) => cols.hashes[r]));
          expect(columns.identities).toEqual(Array.from(order, (r) => cols.identities[r]));
          expect(columns.keyHashes).toEqual(columns.ids.map(idHash));
        },
      ),
    );
  });

  it("refuses a line that is not [id, number, identity]", async () => {
    const head = JSON.stringify({ v: 2, sync_id: "s", cohort_id: 1, run_id: "r", created_at: "", count: 1 });
    for (const line of ['["a","5",""]', '["a",5,"x"],"y"]', '["a",5]', "[1,5,\"\"]"]) {
      await expect(decodeSnapshot(gzipSync(`${head}\n${line}\n`))).rejects.toThrow(/snapshot line 2/);
    }
  });
});
