import { describe, expect, it } from "vitest";
import { requeuePlan, type UnsentRecord, windowDelaySeconds } from "../../../lib/queue/envelope-consumer.js";

const NOW = Date.UTC(2026, 0, 1);
const transient = (position: number): UnsentRecord => ({ position, line: `t${position}`, cause: { kind: "transient" } });
const waiting = (position: number, reopensInMs: number): UnsentRecord => ({ position, line: `w${position}`, cause: { kind: "window", reopensAt: NOW + reopensInMs } });
const untried = (position: number): UnsentRecord => ({ position, line: `u${position}`, cause: { kind: "untried" } });

describe("requeuePlan", () => {
  it("splits a message's unsent records by cause, each group in envelope order", () => {
    const plan = requeuePlan([untried(5), waiting(3, 120_000), transient(2), untried(4), waiting(1, 3_600_000), transient(0)], 2, 6, NOW);
    expect(plan).toEqual([
      { records: ["t0", "t2"], attempt: 3, delaySeconds: 120, deadLetter: false },
      // The earliest reopen time: the later one waits again when it comes back.
      { records: ["w1", "w3"], attempt: 2, delaySeconds: 120, deadLetter: false },
      { records: ["u4", "u5"], attempt: 2, delaySeconds: 0, deadLetter: false },
    ]);
  });

  it("only transient failures spend re-queues toward the DLQ", () => {
    const plan = requeuePlan([transient(0), waiting(1, 3_600_000), untried(2)], 6, 6, NOW);
    expect(plan.map(({ attempt, deadLetter }) => ({ attempt, deadLetter }))).toEqual([
      { attempt: 7, deadLetter: true },
      { attempt: 6, deadLetter: false },
      { attempt: 6, deadLetter: false },
    ]);
  });

  it("a window longer than SQS's 900 s delay is waited in hops; a past one comes back at once", () => {
    expect(windowDelaySeconds(NOW + 3_600_000, NOW)).toBe(900);
    expect(windowDelaySeconds(NOW + 1_500, NOW)).toBe(2);
    expect(windowDelaySeconds(NOW - 5_000, NOW)).toBe(0);
  });
});
