import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { MemberColumns } from "../../../lib/cohorts/member-columns.js";
import { diffMembers, diffStaged } from "../../../lib/cohorts/diff.js";
import { idHash, propertyHash } from "../../../lib/cohorts/hash.js";
import { identityOf } from "../../../lib/cohorts/identity.js";
import { compareKeys, sortedUniqueRows } from "../../../lib/cohorts/member-key.js";
import { decodeSnapshot, encodeSnapshot } from "../../../lib/cohorts/snapshot-codec.js";
import { StagedPageWriter } from "../../../lib/cohorts/staged-page-writer.js";
import { StagedRows } from "../../../lib/cohorts/staged-rows.js";
import { SNAPSHOT_HEADER_V1, SNAPSHOT_HEADER_WITH_IDENTITY_KEYS, memberColumns } from "../../support/cohort-members.js";

const writer = new StagedPageWriter();

const columns = memberColumns;
const header = SNAPSHOT_HEADER_V1;
const headerWithIdentityKeys = SNAPSHOT_HEADER_WITH_IDENTITY_KEYS;

describe("snapshot diff", () => {
  it("adds new members, re-sends changed ones, removes the ones that left, ignores duplicate rows", async () => {
    const previousCols = columns([
      ["a", { $email: "a@x" }],
      ["b", { $email: "b@x" }],
      ["c", { $email: "c@x", plan: "pro" }],
    ]);
    const encoded = await encodeSnapshot(header, previousCols, sortedUniqueRows(previousCols));
    const { columns: previous, header: decodedHeader } = await decodeSnapshot(encoded);
    expect(decodedHeader.count).toBe(3);
    const current = columns([
      ["d", { $email: "d@x" }],
      ["c", { $email: "c@x", plan: "free" }],
      ["a", { $email: "a@x" }],
      ["d", { $email: "d@x" }],
    ]);
    const diff = diffMembers(current, previous, false);
    expect([...diff.send]).toEqual([1, 1, 0, 0]);
    expect(diff.sendCount).toBe(2);
    expect(diff.removedRows.map((j) => previous.ids[j])).toEqual(["b"]);
    expect(previous.identities[diff.removedRows[0] ?? 0]).toBe('{"$email":"b@x"}');
    // The next snapshot: each member once, in member-key order (id hash, then id).
    const next = [...diff.nextSnapshotRows].map((r) => current.ids[r] ?? "");
    expect([...next].sort()).toEqual(["a", "c", "d"]);
    expect(next).toEqual([...next].sort((x, y) => compareKeys(idHash(x), x, idHash(y), y)));
    expect(diff.nextSnapshotRows).not.toContain(3); // the duplicate "d" row
    const full = diffMembers(current, previous, true);
    expect(full.sendCount).toBe(3);
    expect(full.removedRows).toHaveLength(1);
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
  const staged = (members: { id: string; props: Record<string, unknown> }[]) => new StagedRows().add(writer.pageBytes(members), "t");

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

describe("diff lookup with id hash collisions", () => {
  // FNV-1a 32 collisions (found by search): each pair has one id hash.
  const [a, b, c, d] = ["u31992", "u605430", "u31993", "u605431"];

  it("the pairs collide, so the lookup must compare ids", () => {
    expect(idHash(a!)).toBe(idHash(b!));
    expect(idHash(c!)).toBe(idHash(d!));
  });

  it("tells colliding ids apart in either order, with duplicates and members that joined or left", async () => {
    const cols = (ids: string[], hash = 1): MemberColumns => ({ ids, hashes: ids.map(() => hash), identities: ids.map((id) => `{"id":"${id}"}`) });
    const prevCols = cols([a!, b!, c!, "x"]);
    const previous = (await decodeSnapshot(await encodeSnapshot(headerWithIdentityKeys, prevCols, sortedUniqueRows(prevCols)))).columns;
    // b (second of its chain) and a; d joins beside c, which left; b again (a duplicate row).
    const current = cols([b!, d!, a!, "x", b!]);
    const diff = diffMembers(current, previous, false);
    expect(Array.from(diff.previousRow, (j) => (j >= 0 ? previous.ids[j] : null))).toEqual([b, null, a, "x", null]);
    expect([...diff.send]).toEqual([0, 1, 0, 0, 0]);
    expect(diff.removedRows.map((j) => previous.ids[j])).toEqual([c]);
    const next = Array.from(diff.nextSnapshotRows, (r) => current.ids[r]);
    expect([...next].sort()).toEqual([a, b, d, "x"].sort());
    expect(next).toEqual((await decodeSnapshot(await encodeSnapshot(headerWithIdentityKeys, current, diff.nextSnapshotRows))).columns.ids);
  });
});
