import { describe, expect, it } from "vitest";
import { createProgress } from "../../infra/progress.js";

function fakeSink(isTTY: boolean) {
  const writes: string[] = [];
  return { writes, sink: { isTTY, write: (text: string) => writes.push(text) } };
}

describe("operator progress", () => {
  it("draws a bar in place on a terminal and clears it at the end", () => {
    let clock = 0;
    const { writes, sink } = fakeSink(true);
    const progress = createProgress({ unit: "messages", total: 100, sink, now: () => clock });
    clock = 1_000;
    progress.advance(50);
    clock = 1_050; // within the redraw interval: not redrawn
    progress.advance(10);
    clock = 2_000;
    progress.advance(40);
    expect(writes).toHaveLength(2);
    expect(writes[0]).toBe(`\r\x1b[2K[${"#".repeat(15)}${"-".repeat(15)}] 50/100 messages (50%), 50/s`);
    expect(writes[1]).toBe(`\r\x1b[2K[${"#".repeat(30)}] 100/100 messages (100%), 50/s`);
    expect(progress.finish()).toBe("100 messages in 2.0 s (50/s)");
    expect(writes.at(-1)).toBe("\r\x1b[2K");
  });

  it("writes a plain line every interval when not on a terminal, without a total when it is unknown", () => {
    let clock = 0;
    const { writes, sink } = fakeSink(false);
    const progress = createProgress({ unit: "objects", sink, intervalMs: 5_000, now: () => clock });
    clock = 500;
    progress.advance(1);
    clock = 4_000;
    progress.advance(3);
    clock = 8_000;
    progress.advance(4);
    expect(writes).toEqual(["progress: 1 objects, 2.0/s\n", "progress: 8 objects, 1.0/s\n"]);
    expect(progress.finish()).toBe("8 objects in 8.0 s (1.0/s)");
  });
});
