import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { canonicalJson } from "../../../lib/util/json.js";
import {
  type MemberColumns,
  compareKeys,
  decodeSnapshot,
  diffMembers,
  encodeSnapshot,
  encodeSnapshotV2,
  idHash,
  identityOf,
  propertyHash,
  sortedUniqueRows,
} from "../../../lib/cohorts/snapshot.js";
import { planPages } from "../../../lib/cohorts/plan.js";
import { cohortSyncsSchema } from "../../../lib/config/cohort-syncs.js";

function columns(members: [string, Record<string, unknown>][]): MemberColumns {
  return {
    ids: members.map(([id]) => id),
    hashes: members.map(([, p]) => propertyHash(p)),
    identities: members.map(([, p]) => identityOf(p, ["$email"])),
  };
}
const header = { v: 1 as const, sync_id: "s", cohort_id: 1, run_id: "r", created_at: "2026-01-01T00:00:00Z", count: 0 };

describe("snapshot diff", () => {
  it("hashes properties independent of key order", () => {
    expect(canonicalJson({ b: 1, a: { d: 2, c: [1, { y: 1, x: 2 }] } })).toBe('{"a":{"c":[1,{"x":2,"y":1}],"d":2},"b":1}');
    expect(propertyHash({ a: 1, b: 2 })).toBe(propertyHash({ b: 2, a: 1 }));
    expect(propertyHash({ a: 1 })).not.toBe(propertyHash({ a: 2 }));
  });

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

  it("refuses a snapshot that is not sorted", async () => {
    const cols = columns([["b", {}], ["a", {}]]);
    const ascending = compareKeys(idHash("b"), "b", idHash("a"), "a") < 0 ? [0, 1] : [1, 0];
    const descending = [...ascending].reverse();
    await expect(decodeSnapshot(await encodeSnapshot(header, cols, descending))).rejects.toThrow(/not sorted/);
    expect((await decodeSnapshot(await encodeSnapshot(header, cols, ascending))).header.v).toBe(3);
    // And so is a v2 snapshot (gzipped JSON lines) of an earlier release.
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

describe("page plan", () => {
  const webhook = cohortSyncsSchema.parse([
    { id: "w", cohort_id: 1, destination: { type: "webhook", url: "https://h.example/x", signing_secret: "s" } },
  ])[0]!.destination;
  const brevo = cohortSyncsSchema.parse([
    { id: "b", cohort_id: 1, destination: { type: "brevo", list_id: 2, api_key_secret: "k" } },
  ])[0]!.destination;
  it("webhooks: full = members only (≥1 page); diff sends empty add/remove calls", () => {
    expect(planPages(webhook, true, 2500, 7).expected).toEqual({ members: 3, add_members: 0, remove_members: 0 });
    expect(planPages(webhook, true, 0, 0).expected).toEqual({ members: 1, add_members: 0, remove_members: 0 });
    expect(planPages(webhook, false, 0, 0).expected).toEqual({ members: 0, add_members: 1, remove_members: 1 });
    expect(planPages(webhook, false, 1001, 1000).expected).toEqual({ members: 0, add_members: 2, remove_members: 1 });
  });
  it("Brevo/Braze: full also removes leavers; nothing when nothing changed", () => {
    expect(planPages(brevo, true, 10, 3).expected).toEqual({ members: 1, add_members: 0, remove_members: 1 });
    expect(planPages(brevo, false, 0, 0).expected).toEqual({ members: 0, add_members: 0, remove_members: 0 });
  });
});
