import { describe, expect, it } from "vitest";
import { type RejectedBatch, rejectedBatchSchema, serializeBatch } from "../../lib/queue/rejected-store.js";
import { jsonStringifyDepthLimit } from "../fuzz/corpus.js";

/**
 * A rejected payload nested just under JSON.stringify's recursion limit serializes on its
 * own but not inside the batch (a few levels deeper). Found by `npm run fuzz`: such an item
 * on any route made the rejected-store write throw, so the whole request answered 503.
 */
const nested = (depth: number): unknown => JSON.parse(`${"[".repeat(depth)}${"]".repeat(depth)}`);

function batchWith(payload: unknown): RejectedBatch {
  return {
    v: 1,
    stage: "test",
    source: "native",
    correlationId: "corr-depth",
    rejectedAt: "2026-11-27T00:00:00.000Z",
    stageOfFailure: "intake",
    items: [
      { index: 0, code: "invalid_time", reason: "a good neighbour", payload: { event: "E" } },
      { index: 1, code: "too_deep", reason: "nests too deeply", payload },
    ],
  };
}

describe("rejected store serialization near JSON.stringify's depth limit", () => {
  it("stores every depth around the limit with the payload as received, never a throw", () => {
    const limit = jsonStringifyDepthLimit();
    for (let depth = limit - 24; depth <= limit + 8; depth++) {
      const [text = "", ...more] = serializeBatch(batchWith(nested(depth)));
      expect(more).toEqual([]);
      const stored = rejectedBatchSchema.parse(JSON.parse(text));
      expect(stored.items.map((item) => [item.index, item.code, item.reason])).toEqual([
        [0, "invalid_time", "a good neighbour"],
        [1, "too_deep", "nests too deeply"],
      ]);
      expect(stored.items[0]?.payload).toEqual({ event: "E" });
      // Compared as text: a recursive deep-equal would itself overflow at this depth.
      expect(text.endsWith(`"payload":${"[".repeat(depth)}${"]".repeat(depth)}}]}`)).toBe(true);
    }
  });
});
