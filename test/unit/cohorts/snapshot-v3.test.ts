import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { diffStaged } from "../../../lib/cohorts/diff.js";
import { idHash, propertyHash } from "../../../lib/cohorts/hash.js";
import { identityOf } from "../../../lib/cohorts/identity.js";
import type { MemberColumns } from "../../../lib/cohorts/member-columns.js";
import { sortedUniqueRows } from "../../../lib/cohorts/member-key.js";
import { partitionOf } from "../../../lib/cohorts/partition-layout.js";
import { decodeSnapshot, encodeSnapshot } from "../../../lib/cohorts/snapshot-codec.js";
import { encodeSnapshotV2 } from "../../../lib/cohorts/snapshot-v2.js";
import { isGzip } from "../../../lib/cohorts/snapshot-v3.js";
import { StagedPageWriter } from "../../../lib/cohorts/staged-page-writer.js";
import { StagedRows } from "../../../lib/cohorts/staged-rows.js";
import { SNAPSHOT_HEADER_WITH_IDENTITY_KEYS, hostileMemberId, memberProps } from "../../support/cohort-members.js";

const writer = new StagedPageWriter();

const hostileId = hostileMemberId;
const header = SNAPSHOT_HEADER_WITH_IDENTITY_KEYS;

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
  const props = memberProps(6);

  it("a snapshot written by the v2 writer (JSON lines, gzip) diffs cleanly against the same members: nothing sent, removed or recomputed", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.record({ id: hostileId, props }), { selector: (m) => m.id, maxLength: 12 }), async (members) => {
        const wanted = ["$email"];
        // What the v2 writer stored after delivering these members.
        const cols: MemberColumns = {
          ids: members.map((m) => m.id),
          hashes: members.map((m) => propertyHash(m.props)),
          identities: members.map((m) => identityOf(m.props, wanted)),
        };
        const old = await encodeSnapshotV2({ ...header, identity_keys: wanted }, cols, sortedUniqueRows(cols));
        expect(isGzip(old)).toBe(true);
        const previous = (await decodeSnapshot(old)).columns;
        // This release stages the same members, diffs, and writes its snapshot (v3).
        const staged = new StagedRows().add(Buffer.from(writer.pageText(members)), "t");
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
