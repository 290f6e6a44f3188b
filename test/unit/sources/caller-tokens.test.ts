import { describe, expect, it, vi } from "vitest";
import { enqueueMappedItems } from "../../../lib/enqueue/enqueue.js";
import { metrics } from "../../../lib/observability/telemetry.js";
import { mapNativeEvents } from "../../../lib/sources/native.js";
import { mapGroupUpdates } from "../../../lib/sources/groups.js";
import { mapProfileUpdates } from "../../../lib/sources/profiles.js";
import type { MappedItem } from "../../../lib/sources/types.js";
import { context, NOW_MS } from "./support.js";

const time = NOW_MS / 1000;
const OTHER_PROJECT = "0123456789abcdef0123456789abcdef";

function lineOf(item: MappedItem | undefined): Record<string, unknown> {
  if (!item?.ok) throw new Error(`expected a mapped record, got ${JSON.stringify(item)}`);
  return JSON.parse(item.line) as Record<string, unknown>;
}

describe("a caller's project token is never forwarded", () => {
  it("removes token and $token from /v1/events properties and counts them", () => {
    const [item] = mapNativeEvents([{ event: "E", properties: { distinct_id: "u", time, token: OTHER_PROJECT, $token: "t2", plan: "pro" } }], context());
    expect(lineOf(item).properties).toEqual(expect.objectContaining({ distinct_id: "u", plan: "pro" }));
    expect(Object.keys(lineOf(item).properties as object)).not.toContain("token");
    expect(Object.keys(lineOf(item).properties as object)).not.toContain("$token");
    expect(item?.ok && item.callerTokensRemoved).toBe(2);
    const [plain] = mapNativeEvents([{ event: "E", properties: { distinct_id: "u", time } }], context());
    expect(plain?.ok && plain.callerTokensRemoved).toBeFalsy();
  });

  it("removes token and $token inside every valued profile and group operation and counts them", () => {
    const updates = mapProfileUpdates(
      [
        { $distinct_id: "u", $token: OTHER_PROJECT, $set: { token: OTHER_PROJECT, $token: "x", plan: "pro" } },
        { $distinct_id: "u", $set_once: { $token: "x", first: 1 } },
        { $distinct_id: "u", $union: { token: ["x"], tags: ["a"] } },
        { $distinct_id: "u", $add: { token: 1, n: 2 } },
      ],
      context(),
    );
    expect(lineOf(updates[0])).toEqual({ $distinct_id: "u", $ip: "0", $set: { plan: "pro" } });
    expect(updates[0]?.ok && updates[0].callerTokensRemoved).toBe(2);
    expect(lineOf(updates[1]).$set_once).toEqual({ first: 1 });
    expect(lineOf(updates[2]).$union).toEqual({ tags: ["a"] });
    expect(lineOf(updates[3]).$add).toEqual({ n: 2 });
    const [group] = mapGroupUpdates([{ $group_key: "company", $group_id: "c", $set: { $token: OTHER_PROJECT, size: 3 } }], context());
    expect(lineOf(group).$set).toEqual({ size: 3 });
  });

  it("the enqueue step counts removed tokens in a metric", async () => {
    const addMetric = vi.spyOn(metrics, "addMetric");
    try {
      const items = mapNativeEvents([{ event: "E", properties: { distinct_id: "u", time, token: OTHER_PROJECT } }], context());
      const sent: string[] = [];
      const result = await enqueueMappedItems(
        items,
        { source: "native", correlationId: "c", stageOfFailure: "intake", policy: undefined },
        { config: {}, queue: { send: async (_url, bodies) => void sent.push(...bodies) }, queueUrl: "q", rejected: { put: async () => "" }, maxMessageBytes: 262_144 },
      );
      expect(result.accepted).toBe(1);
      expect(sent.join("")).not.toContain(OTHER_PROJECT);
      expect(addMetric).toHaveBeenCalledWith("CallerTokensRemoved", "Count", 1);
    } finally {
      addMetric.mockRestore();
    }
  });
});
