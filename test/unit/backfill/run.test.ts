import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type BackfillDeps, type BackfillProgress, daysBetween, formatBackfillReport, runBackfill } from "../../../lib/backfill/run.js";
import { parseStageConfig } from "../../../lib/config/stage.js";
import type { EnqueueDeps } from "../../../lib/enqueue/enqueue.js";
import type { ExportDayRequest, ExportLine } from "../../../lib/mixpanel/export.js";
import { idDigest } from "../../../lib/privacy/suppression.js";
import { parseQueuedRecords } from "../../../lib/records/envelope-v2.js";

/**
 * The backfill's day loop with the export and the queues replaced by memory: what reaches the
 * Brevo queue per day, what is skipped and refused, and how a stopped run resumes.
 */
const config = parseStageConfig(
  {
    brevo: {
      api_key_secret: "brevo",
      sync: { events: true },
      identifiers: { ext_id: "distinct_id", email_id: "$email" },
      event_mapping: { Purchase: "order_completed" },
    },
  },
  "test",
);
const brevo = config.brevo!;
const DAYS = ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"];

/** Per day: two mapped purchases, one unmapped page view, one purchase with no identifier (device only). */
function dayLines(day: string): string[] {
  const at = Date.parse(`${day}T12:00:00Z`);
  return [
    JSON.stringify({ event: "Purchase", properties: { distinct_id: `u-${day}`, time: at, $insert_id: `p1-${day}`, mp_processing_time_ms: at + 9, $mp_api_endpoint: "api.mixpanel.com" } }),
    JSON.stringify({ event: "Viewed", properties: { distinct_id: `u-${day}`, time: at + 1, $insert_id: `v-${day}` } }),
    JSON.stringify({ event: "Purchase", properties: { distinct_id: `w-${day}`, time: Math.floor(at / 1000) + 2, $insert_id: `p2-${day}` } }),
    JSON.stringify({ event: "Purchase", properties: { distinct_id: `$device:d-${day}`, $device_id: `d-${day}`, time: at + 3, $insert_id: `p3-${day}` } }),
  ];
}

interface Queued {
  readonly url: string;
  readonly lines: string[];
}

function memoryEnqueue(queued: Queued[], erased: ReadonlySet<string> = new Set()): EnqueueDeps {
  return {
    config,
    queue: {
      send: async (url, bodies) => {
        for (const body of bodies) queued.push({ url, lines: [...parseQueuedRecords(body).lines()] });
      },
    },
    brevoQueueUrl: "brevo-queue",
    rejected: { put: async () => "key" },
    maxMessageBytes: 262_144,
    erasedDigests: async () => erased,
  };
}

function deps(queued: Queued[], overrides: Partial<BackfillDeps> = {}): BackfillDeps {
  return {
    brevo,
    identityMode: "simplified",
    policy: undefined,
    exportDay: async function* (request: ExportDayRequest): AsyncGenerator<ExportLine> {
      for (const text of dayLines(request.day)) yield { kind: "line", text };
    },
    enqueue: memoryEnqueue(queued),
    nowMs: Date.now,
    log: () => undefined,
    ...overrides,
  };
}

const queuedByDay = (queued: Queued[]) => {
  const byDay: Record<string, number> = {};
  for (const message of queued) {
    for (const line of message.lines) {
      const insertId = (JSON.parse(line) as { properties: { $insert_id: string } }).properties.$insert_id;
      const day = insertId.slice(-10);
      byDay[day] = (byDay[day] ?? 0) + 1;
    }
  }
  return byDay;
};

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "relay-backfill-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("Brevo history backfill", () => {
  it("queues only what the Brevo forwarder would send, on the Brevo queue alone, as live records, and counts the rest by reason", async () => {
    const queued: Queued[] = [];
    const erased = new Set([idDigest("w-2026-03-02")]);
    const report = await runBackfill(
      { days: DAYS.slice(0, 2), dryRun: false, batchEvents: 1, checkpointPath: join(dir, "c.json"), resume: false, runKey: "k" },
      deps(queued, { enqueue: memoryEnqueue(queued, erased) }),
    );
    expect(report).toMatchObject({ read: 8, mapped: 4, skippedUnmapped: 2, queued: 3, rejected: 3 });
    expect(Object.fromEntries(Object.entries(report.byReason).map(([code, entry]) => [code, entry.count]))).toEqual({ no_identifier: 2, erased: 1 });
    expect(queued.every((message) => message.url === "brevo-queue")).toBe(true);
    const first = JSON.parse(queued[0]?.lines[0] ?? "{}") as { event: string; properties: Record<string, unknown> };
    // Mixpanel's ingestion bookkeeping is left out; a time in seconds becomes ms.
    expect(first).toEqual({ event: "Purchase", properties: { distinct_id: "u-2026-03-01", time: Date.parse("2026-03-01T12:00:00Z"), $insert_id: "p1-2026-03-01" } });
    const second = JSON.parse(queued[1]?.lines[0] ?? "{}") as { properties: { time: number } };
    expect(second.properties.time).toBe(Math.floor(Date.parse("2026-03-01T12:00:00Z") / 1000) * 1000 + 2000);
    expect(queuedByDay(queued)).toEqual({ "2026-03-01": 2, "2026-03-02": 1 });
    expect(formatBackfillReport(report)[0]).toMatch(/read 8 events, mapped 4, skipped unmapped 2, queued for Brevo 3, rejected 3/);
  });

  it("a dry run maps and counts the same, queues nothing and writes no checkpoint", async () => {
    const queued: Queued[] = [];
    const checkpointPath = join(dir, "dry.json");
    const report = await runBackfill({ days: DAYS, dryRun: true, batchEvents: 100, checkpointPath, resume: false, runKey: "k" }, deps(queued));
    expect(report).toMatchObject({ dryRun: true, read: 16, mapped: 8, skippedUnmapped: 4, queued: 8, rejected: 4 });
    expect(queued).toHaveLength(0);
    expect(existsSync(checkpointPath)).toBe(false);
  });

  it("a run stopped mid-way and resumed never queues a finished day again and finishes the rest", async () => {
    const queued: Queued[] = [];
    const checkpointPath = join(dir, "resume.json");
    const options = { days: DAYS, dryRun: false, batchEvents: 1, checkpointPath, resume: false, runKey: "k" };
    const exported: string[] = [];
    // The third day breaks off after its first event has been queued.
    const failing = async function* (request: ExportDayRequest): AsyncGenerator<ExportLine> {
      exported.push(request.day);
      const lines = dayLines(request.day);
      for (const [index, text] of lines.entries()) {
        if (request.day === "2026-03-03" && index === 2) throw new Error("connection reset");
        yield { kind: "line", text };
      }
    };
    await expect(runBackfill(options, deps(queued, { exportDay: failing }))).rejects.toThrow(/connection reset/);
    const checkpoint = JSON.parse(readFileSync(checkpointPath, "utf8")) as { files: Record<string, { finished: boolean }> };
    expect(Object.entries(checkpoint.files).filter(([, day]) => day.finished).map(([name]) => name)).toEqual(["2026-03-01", "2026-03-02"]);
    const beforeResume = queuedByDay(queued);
    expect(beforeResume).toEqual({ "2026-03-01": 2, "2026-03-02": 2, "2026-03-03": 1 });

    queued.length = 0;
    exported.length = 0;
    const whole = async function* (request: ExportDayRequest): AsyncGenerator<ExportLine> {
      exported.push(request.day);
      for (const text of dayLines(request.day)) yield { kind: "line", text };
    };
    const progress: BackfillProgress[] = [];
    const resumed = await runBackfill({ ...options, resume: true }, deps(queued, { exportDay: whole, onProgress: (update) => progress.push(update) }));
    // Days finished by the earlier run are reported as such (the bar leaves them out of its rate and ETA).
    expect(progress.filter((update) => update.dayFinished).map((update) => [update.daysDone, update.resumed === true])).toEqual([
      [1, true],
      [2, true],
      [3, false],
      [4, false],
    ]);
    // Finished days are neither exported nor queued again; the day cut off is sent again whole
    // (same $insert_ids, which the Brevo forwarder skips once sent).
    expect(exported).toEqual(["2026-03-03", "2026-03-04"]);
    expect(resumed.days.filter((day) => day.resumed).map((day) => day.day)).toEqual(["2026-03-01", "2026-03-02"]);
    expect(queuedByDay(queued)).toEqual({ "2026-03-03": 2, "2026-03-04": 2 });

    // A resume with other options is refused rather than skipping days it never sent.
    await expect(runBackfill({ ...options, resume: true, runKey: "other" }, deps([]))).rejects.toThrow(/other options/);
  });

  it("reads a day range as UTC days and refuses what is not one", () => {
    expect(daysBetween("2024-02-28", "2024-03-01")).toEqual(["2024-02-28", "2024-02-29", "2024-03-01"]);
    expect(daysBetween("2023-02-29", "2023-03-01")).toEqual({ error: expect.stringMatching(/--from/) });
    expect(daysBetween("2024-03-02", "2024-03-01")).toEqual({ error: expect.stringMatching(/before/) });
    expect(daysBetween("2000-01-01", "2026-01-01")).toEqual({ error: expect.stringMatching(/at most/) });
  });
});
