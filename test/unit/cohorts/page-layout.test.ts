import { describe, expect, it } from "vitest";
import { pageLayout } from "../../../lib/cohorts/page-layout.js";
import { partitionOf } from "../../../lib/cohorts/partition-layout.js";
import { parseSyncs } from "./harness.js";

const [webhook, brevo] = parseSyncs([
  { id: "w", cohort_id: 1, destination: { type: "webhook", url: "http://127.0.0.1:9/x", signing_secret: "s" } },
  { id: "b", cohort_id: 1, destination: { type: "brevo", list_id: 2, api_key_secret: "k" } },
]);
const part = (send: number, removed: number, moved = 0) => ({ send, removed, moved });

describe("partitioned page layout", () => {
  it("numbers each partition's pages on from the previous partition's, per action", () => {
    const layout = pageLayout(webhook!, false, [part(1500, 10), part(0, 0), part(999, 1001)]);
    expect(layout.expected).toEqual({ members: 0, add_members: 3, remove_members: 3 });
    expect(layout.perPart.map((p) => [p.primary.first, p.primary.count, p.remove.first, p.remove.count])).toEqual([
      [1, 2, 1, 1],
      [3, 0, 2, 0],
      [3, 1, 2, 2],
    ]);
  });

  it("keeps the plan's floors: one empty page when a webhook gets nothing, nothing for Brevo", () => {
    const empty = [part(0, 0), part(0, 0)];
    expect(pageLayout(webhook!, true, empty).expected).toEqual({ members: 1, add_members: 0, remove_members: 0 });
    expect(pageLayout(webhook!, false, empty).expected).toEqual({ members: 0, add_members: 1, remove_members: 1 });
    expect(pageLayout(webhook!, false, empty).perPart[1]?.primary.count).toBe(0);
    expect(pageLayout(brevo!, false, empty).expected).toEqual({ members: 0, add_members: 0, remove_members: 0 });
    // Full webhook syncs never send removals; Brevo full syncs do (moved keys included).
    expect(pageLayout(webhook!, true, [part(10, 5)]).expected.remove_members).toBe(0);
    expect(pageLayout(brevo!, true, [part(10, 5, 1), part(0, 0, 2)]).expected).toEqual({ members: 1, add_members: 0, remove_members: 2 });
  });

  it("hash ranges cover the id space in order", () => {
    expect(partitionOf(0, 20)).toBe(0);
    expect(partitionOf(4_294_967_295, 20)).toBe(19);
    for (let h = 0; h < 4_294_967_296; h += 104_729_999) {
      expect(partitionOf(h, 7)).toBeLessThanOrEqual(partitionOf(h + 104_729_999, 7));
    }
  });
});
