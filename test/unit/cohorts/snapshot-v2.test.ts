import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { diffMembers } from "../../../lib/cohorts/diff.js";
import { idHash } from "../../../lib/cohorts/hash.js";
import type { MemberColumns } from "../../../lib/cohorts/member-columns.js";
import { compareKeys, sortedUniqueRows } from "../../../lib/cohorts/member-key.js";
import { decodeSnapshot, encodeSnapshot } from "../../../lib/cohorts/snapshot-codec.js";
import { encodeSnapshotV2 } from "../../../lib/cohorts/snapshot-v2.js";
import { SNAPSHOT_HEADER_V1, memberColumns, memberId } from "../../support/cohort-members.js";

const columns = memberColumns;
const header = SNAPSHOT_HEADER_V1;

describe("snapshot v1 and v2 (JSON lines)", () => {
  it("refuses a snapshot that is not sorted", async () => {
    const cols = columns([["b", {}], ["a", {}]]);
    const ascending = compareKeys(idHash("b"), "b", idHash("a"), "a") < 0 ? [0, 1] : [1, 0];
    const descending = [...ascending].reverse();
    await expect(decodeSnapshot(await encodeSnapshot(header, cols, descending))).rejects.toThrow(/not sorted/);
    expect((await decodeSnapshot(await encodeSnapshot(header, cols, ascending))).header.v).toBe(3);
    // And so is a v2 snapshot (gzipped JSON lines).
    await expect(decodeSnapshot(await encodeSnapshotV2(header, cols, descending))).rejects.toThrow(/not sorted/);
    expect((await decodeSnapshot(await encodeSnapshotV2(header, cols, ascending))).header.v).toBe(2);
  });

  it("reads a v1 snapshot (id order, earlier release) and re-sorts it into member-key order", async () => {
    const ids = ["a", "b", "c", "d", "e"];
    const lines = [JSON.stringify({ ...header, count: 5 }), ...ids.map((id) => JSON.stringify([id, 7, ""]))];
    const v1 = gzipSync(lines.join("\n") + "\n");
    const { columns: decoded } = await decodeSnapshot(v1);
    expect([...decoded.ids].sort()).toEqual(ids);
    expect(decoded.ids).toEqual([...ids].sort((x, y) => compareKeys(idHash(x), x, idHash(y), y)));
    const diff = diffMembers(columns([["c", {}]]), decoded, false);
    expect(diff.removedRows.map((j) => decoded.ids[j]).sort()).toEqual(["a", "b", "d", "e"]);
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
