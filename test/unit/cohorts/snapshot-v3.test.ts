import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalJson } from "../../../lib/util/json.js";
import {
  type MemberColumns,
  decodeSnapshot,
  diffMembers,
  encodeSnapshot,
  encodeSnapshotV2,
  idHash,
  identityOf,
  propertyHash,
  propertyHashOfText,
  sortedUniqueRows,
} from "../../../lib/cohorts/snapshot.js";
import { isGzip } from "../../../lib/cohorts/snapshot-v3.js";
import { PartitionSplitter, StagedRows, diffStaged, lineId, parseStagedText, stagedLine, stagedTextOfMembers } from "../../../lib/cohorts/staged-rows.js";
import { partitionOf } from "../../../lib/cohorts/partition-layout.js";

// Ids a v3 entry must escape (leading quote, newline, lone and paired surrogates) and ones it stores as they are.
const hostileId = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.string({ unit: "binary", maxLength: 6 }),
  fc.constantFrom('"quoted', 'a"b', "a\\b", "n\nl", "\r\n", "lone\ud800", "\udc00x", "emoji😀", "é", "\u2028", "", '"', "\\"),
);
const header = { v: 2 as const, sync_id: "s", cohort_id: 1, run_id: "r", created_at: "2026-11-27T00:00:00Z", count: 0, identity_keys: ["$email"] };

describe("snapshot v3 (columns)", () => {
  it("decode reads back any ids, identities and 52-bit hashes, in order, with their id hashes", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.tuple(hostileId, fc.integer({ min: 0, max: 2 ** 52 - 1 }), fc.oneof(fc.constant(""), fc.json())), { selector: ([id]) => id, maxLength: 12 }),
        async (rows) => {
          const cols: MemberColumns = { ids: rows.map(([id]) => id), hashes: rows.map(([, h]) => h), identities: rows.map(([, , i]) => i) };
          const order = sortedUniqueRows(cols);
          const bytes = await encodeSnapshot(header, cols, order);
          expect(isGzip(bytes)).toBe(false);
          const { header: read, columns } = await decodeSnapshot(bytes);
          expect(read).toMatchObject({ v: 3, count: order.length, prop_hash: "fnv-52", identity_keys: ["$email"] });
          expect(columns.ids).toEqual(Array.from(order, (r) => cols.ids[r]));
          expect(columns.hashes).toEqual(Array.from(order, (r) => cols.hashes[r]));
          expect(columns.identities).toEqual(Array.from(order, (r) => cols.identities[r]));
          expect(columns.keyHashes).toEqual(columns.ids.map(idHash));
          expect(columns.identityKeys).toBe('["$email"]');
        },
      ),
    );
  });

  it("refuses a truncated or padded object, a wrong header and a bad hash", async () => {
    const cols: MemberColumns = { ids: ["a", "b"], hashes: [1, 2], identities: ["", '{"$email":"b@x"}'] };
    const bytes = await encodeSnapshot(header, cols, sortedUniqueRows(cols));
    await expect(decodeSnapshot(bytes.subarray(0, bytes.length - 1))).rejects.toThrow(/bytes/);
    await expect(decodeSnapshot(Buffer.concat([bytes, Buffer.from("x")]))).rejects.toThrow(/bytes/);
    await expect(decodeSnapshot(Buffer.from('{"v":3}\n'))).rejects.toThrow(/wrong shape/);
    await expect(decodeSnapshot(Buffer.from("not json\n"))).rejects.toThrow(/not JSON/);
    const bad = Buffer.from(bytes);
    bad.writeDoubleLE(0.5, bad.length - 8);
    await expect(decodeSnapshot(bad)).rejects.toThrow(/hash 2/);
  });

  it("reads one hash range of a snapshot (a run with another partition count)", async () => {
    const ids = Array.from({ length: 200 }, (_, i) => `m${i}`);
    const cols: MemberColumns = { ids, hashes: ids.map((_, i) => i), identities: ids.map(() => "") };
    const bytes = await encodeSnapshot(header, cols, sortedUniqueRows(cols));
    const parts = [0, 1, 2].map(async (p) => (await decodeSnapshot(bytes, (h) => partitionOf(h, 3) === p)).columns);
    const read = await Promise.all(parts);
    expect(read.flatMap((c) => c.ids).sort()).toEqual([...ids].sort());
    read.forEach((c, p) => expect(c.keyHashes?.every((h) => partitionOf(h, 3) === p)).toBe(true));
    expect(read.flatMap((c) => c.hashes).sort((a, b) => a - b)).toEqual(ids.map((_, i) => i));
  });
});

describe("across the deploy", () => {
  const props = fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 6 });

  it("a staged line's hash is propertyHash of canonicalJson, for any properties (the hash today's snapshots hold)", () => {
    fc.assert(
      fc.property(hostileId, props, (id, p) => {
        const line = stagedLine({ id, props: p });
        expect(line.slice(line.indexOf("\t") + 1)).toBe(`${propertyHash(p)}\t${canonicalJson(p)}`);
      }),
    );
  });

  it("a snapshot written by the release before (v2 lines, gzip) diffs cleanly against the same members: nothing sent, removed or recomputed", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.record({ id: hostileId, props }), { selector: (m) => m.id, maxLength: 12 }), async (members) => {
        const wanted = ["$email"];
        // What the previous release wrote after delivering these members.
        const cols: MemberColumns = {
          ids: members.map((m) => m.id),
          hashes: members.map((m) => propertyHash(m.props)),
          identities: members.map((m) => identityOf(m.props, wanted)),
        };
        const old = await encodeSnapshotV2({ ...header, identity_keys: wanted }, cols, sortedUniqueRows(cols));
        expect(isGzip(old)).toBe(true);
        const previous = (await decodeSnapshot(old)).columns;
        // This release stages the same members, diffs, and writes its snapshot (v3).
        const staged = new StagedRows().add(Buffer.from(stagedTextOfMembers(members)), "t");
        const { current, diff } = diffStaged(staged, previous, false, previous.propHash ?? "sha1-48", wanted);
        expect(diff.sendCount).toBe(0);
        expect(diff.removedRows).toEqual([]);
        expect(current.identities).toEqual(members.map((m) => identityOf(m.props, wanted)));
        const next = await encodeSnapshot({ ...header, identity_keys: wanted }, current, diff.nextSnapshotRows, { ids: previous.ids, previousRow: diff.previousRow });
        // …and the run after it, on v3, finds nothing to send either.
        const again = (await decodeSnapshot(next)).columns;
        expect(again.ids).toEqual(previous.ids);
        expect(again.hashes).toEqual(previous.hashes);
        expect(again.identities).toEqual(previous.identities);
        const second = diffStaged(staged, again, false, again.propHash ?? "sha1-48", wanted);
        expect(second.diff.sendCount).toBe(0);
        expect(second.diff.removedRows).toEqual([]);
        // A v3 snapshot written from a v3 one (ids taken unchecked when every id was stored as it is) reads back the same.
        expect(again.plainIds).toBe(previous.ids.every((id) => !/^"|[\n\ud800-\udfff]/.test(id)));
        const third = await encodeSnapshot({ ...header, identity_keys: wanted }, second.current, second.diff.nextSnapshotRows, {
          ids: again.ids,
          previousRow: second.diff.previousRow,
          ...(again.plainIds ? { plainIds: true } : {}),
        });
        expect((await decodeSnapshot(third)).columns.ids).toEqual(previous.ids);
      }),
    );
  });
});

describe("spill on bytes", () => {
  it("puts every staged line in the partition of its id hash, as the string path would, and keeps the lines as they are", () => {
    fc.assert(
      fc.property(fc.array(fc.record({ id: hostileId, props: fc.dictionary(fc.string({ maxLength: 4 }), fc.string({ maxLength: 4 }), { maxKeys: 3 }) }), { maxLength: 20 }), fc.integer({ min: 1, max: 5 }), (members, parts) => {
        const text = stagedTextOfMembers(members);
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

describe("hash functions", () => {
  // The definitions as the snapshots in S3 were written with them, one code unit at a time.
  const fnv52 = (text: string) => {
    let a = 0x811c9dc5;
    let b = 0x01000193 ^ text.length;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
    }
    b ^= b >>> 15;
    return (a >>> 0) * 1_048_576 + ((b >>> 0) >>> 12);
  };
  const fnv32 = (id: string) => {
    let h = 0x811c9dc5;
    for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
    return h >>> 0;
  };

  it("the unrolled property and id hashes give the values stored snapshots hold", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 40 }), (text) => {
        expect(propertyHashOfText(text, "fnv-52")).toBe(fnv52(text));
        expect(idHash(text)).toBe(fnv32(text));
      }),
      { numRuns: 500 },
    );
    expect(propertyHashOfText('{"$email":"a@x","plan":"pro"}', "fnv-52")).toBe(fnv52('{"$email":"a@x","plan":"pro"}'));
    expect(idHash("d-1")).toBe(fnv32("d-1"));
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
    const previous = (await decodeSnapshot(await encodeSnapshot(header, prevCols, sortedUniqueRows(prevCols)))).columns;
    // b (second of its chain) and a; d joins beside c, which left; b again (a duplicate row).
    const current = cols([b!, d!, a!, "x", b!]);
    const diff = diffMembers(current, previous, false);
    expect(Array.from(diff.previousRow, (j) => (j >= 0 ? previous.ids[j] : null))).toEqual([b, null, a, "x", null]);
    expect([...diff.send]).toEqual([0, 1, 0, 0, 0]);
    expect(diff.removedRows.map((j) => previous.ids[j])).toEqual([c]);
    const next = Array.from(diff.nextSnapshotRows, (r) => current.ids[r]);
    expect([...next].sort()).toEqual([a, b, d, "x"].sort());
    expect(next).toEqual((await decodeSnapshot(await encodeSnapshot(header, current, diff.nextSnapshotRows))).columns.ids);
  });
});
