import { describe, expect, it } from "vitest";
import { MIXPANEL_IMPORT_BYTES_PER_MINUTE, ROLLING_WINDOW_MS, ndjsonBytes, rollingByteBudget } from "../../../lib/import/byte-budget.js";
import { directSender } from "../../../lib/import/direct.js";
import type { IngestionClient } from "../../../lib/mixpanel/ingestion.js";
import type { MappedItem } from "../../../lib/sources/types.js";

/** A clock that only moves when someone sleeps on it. */
function fakeClock(startMs = 1_000_000) {
  let nowMs = startMs;
  const sleeps: number[] = [];
  return {
    nowMs: () => nowMs,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      nowMs += ms;
    },
    advance: (ms: number) => (nowMs += ms),
    sleeps,
  };
}

describe("the rolling byte budget of /import", () => {
  it("lets spends through until the minute holds the limit, then waits for the oldest to leave the window", async () => {
    const clock = fakeClock();
    const budget = rollingByteBudget(100, ROLLING_WINDOW_MS, clock);
    await budget.spend(60);
    clock.advance(20_000);
    await budget.spend(40);
    expect(clock.sleeps).toEqual([]);
    // 100 bytes in the window: the next 10 wait until the first 60 are a minute old (40 s from now).
    await budget.spend(10);
    expect(clock.sleeps).toEqual([40_000]);
    // Rolling, not reset per minute: 40 + 10 are still in the window, so 50 more fit, 51 do not.
    await budget.spend(50);
    expect(clock.sleeps).toEqual([40_000]);
    await budget.spend(1);
    expect(clock.sleeps).toEqual([40_000, 20_000]);
  });

  it("serves concurrent spends in arrival order, and sends one larger than the whole budget alone", async () => {
    const clock = fakeClock();
    const budget = rollingByteBudget(100, ROLLING_WINDOW_MS, clock);
    const order: string[] = [];
    await Promise.all([budget.spend(90).then(() => order.push("a")), budget.spend(20).then(() => order.push("b")), budget.spend(5).then(() => order.push("c"))]);
    expect(order).toEqual(["a", "b", "c"]);
    expect(clock.sleeps).toEqual([60_000]);
    await budget.spend(500);
    expect(clock.sleeps).toEqual([60_000, 60_000]);
  });

  it("is Mixpanel's 2 GB per rolling minute, counted on the uncompressed NDJSON", () => {
    expect(MIXPANEL_IMPORT_BYTES_PER_MINUTE).toBe(2_000_000_000);
    expect(ndjsonBytes(['{"a":"é"}', "{}"])).toBe(11 + 3);
  });

  it("holds a --via direct batch of events until its bytes fit the minute", async () => {
    const clock = fakeClock();
    const sentAt: number[] = [];
    const client = {
      importEvents: async (lines: readonly string[]) => {
        sentAt.push(clock.nowMs());
        return lines.map(() => ({ status: "imported" as const }));
      },
    } as unknown as IngestionClient;
    const line = JSON.stringify({ event: "e", properties: { distinct_id: "u", time: 1, $insert_id: "x" } });
    const items: MappedItem[] = Array.from({ length: 10 }, (_, index) => ({ ok: true, index, kind: "event", line, insertId: "x" }) as MappedItem);
    const perBatch = ndjsonBytes(items.map((item) => (item.ok ? item.line : "")));
    const send = directSender({ client, rejected: { put: async () => "" }, importBudget: rollingByteBudget(perBatch * 2, ROLLING_WINDOW_MS, clock) });
    const batch = { source: "native", correlationId: "c", policy: undefined };
    for (let n = 0; n < 3; n += 1) expect((await send(items, batch)).accepted).toBe(10);
    expect(sentAt.map((at) => at - 1_000_000)).toEqual([0, 0, ROLLING_WINDOW_MS]);
  });
});
