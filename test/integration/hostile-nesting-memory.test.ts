import { type ChildProcessByStdio, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * Bodies of a few KB that inflate to ~10 MB nested millions deep (or millions wide), sent to the real intake
 * handler running in its own process with a 400 MB heap (less than the intake Lambda's): every
 * route answers 4xx, the process stays up, and one request's peak RSS stays within 128 MB of
 * the idle process. Before the depth check, JSON.parse of such a body alone took ~300 MB of
 * heap and the rejected store's writer ran out of it.
 */
const HEAP_CAP_MB = 400;
const PER_REQUEST_RSS_BUDGET_BYTES = 128 * 1024 * 1024;
const LEVELS = 4_999_000;

const listNesting = gzipSync(Buffer.concat([Buffer.alloc(LEVELS, "["), Buffer.alloc(LEVELS, "]")]), { level: 9 });
/** An object nested ~1.6 M deep: `{"a":{"a":…1…}}`. */
const OBJECT_LEVELS = 1_600_000;
const objectNesting = gzipSync(Buffer.concat([Buffer.from('{"a":'.repeat(OBJECT_LEVELS)), Buffer.from("1"), Buffer.alloc(OBJECT_LEVELS, "}")]), { level: 9 });

/** Wide instead of deep: ~3.3 M empty objects in 10 MB (~300 MB of heap once parsed). */
const wideRaw = Buffer.from(`[${"{},".repeat(3_300_000)}{}]`);
const wideObjects = gzipSync(wideRaw, { level: 9 });
/** The same shape sent raw to the /v1 routes, within their 5 MB body limit. */
const wideRawWithinCap = Buffer.from(`[${"{},".repeat(1_600_000)}{}]`);

let child: ChildProcessByStdio<Writable, Readable, Readable>;
let childStderr = "";
let intakeUrl = "";
let intakeToken = "";
let pid = 0;

function status(field: "VmRSS" | "VmHWM"): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((entry) => entry.startsWith(`${field}:`)) ?? "";
  return Number(/(\d+)\s*kB/.exec(line)?.[1] ?? Number.NaN) * 1024;
}

/** Resets the process's peak RSS (VmHWM) to its current RSS (proc(5), clear_refs value 5). */
function resetPeak(): void {
  writeFileSync(`/proc/${pid}/clear_refs`, "5");
}

interface Target {
  readonly path: string;
  readonly headers: Record<string, string>;
  /** The bodies sent, each with the refusal it must get. */
  readonly bodies: readonly (readonly [Buffer, RegExp])[];
}
const compat = (path: string, extra: Record<string, string> = {}): Target => ({
  path,
  headers: { "content-encoding": "gzip", "content-type": "application/json", ...extra },
  bodies: [
    [listNesting, /too_deep/],
    [objectNesting, /too_deep/],
    [wideObjects, /too_many_values/],
  ],
});
const targets = (): Target[] => [
  compat("/track?verbose=1"),
  compat("/engage?verbose=1"),
  compat("/groups?verbose=1"),
  compat("/import?strict=1", { authorization: `Basic ${Buffer.from(`${intakeToken}:`).toString("base64")}` }),
  // The /v1 routes read the body as sent; a gzip body there is bytes that are not UTF-8.
  {
    path: "/v1/events",
    headers: { "content-type": "application/json", authorization: `Bearer ${intakeToken}` },
    bodies: [
      [listNesting, /invalid_utf8/],
      [objectNesting, /invalid_utf8/],
      [wideRawWithinCap, /too_many_values/],
    ],
  },
];

async function post(target: Target, body: Buffer): Promise<{ status: number; body: string }> {
  const response = await fetch(`${intakeUrl}${target.path}`, { method: "POST", headers: target.headers, body: new Uint8Array(body), signal: AbortSignal.timeout(60_000) });
  return { status: response.status, body: await response.text() };
}

beforeAll(async () => {
  child = spawn(process.execPath, [`--max-old-space-size=${HEAP_CAP_MB}`, "--import", "tsx", "test/support/intake-child.ts"], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  // The child's log lines are noise here; its last words (a heap exhaustion) are kept for the failure message.
  child.stderr.on("data", (chunk: Buffer) => (childStderr = (childStderr + chunk.toString()).slice(-4000)));
  const first = await new Promise<string>((resolveLine, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.once("line", resolveLine);
    child.once("exit", (code) => reject(new Error(`intake child exited with ${code}: ${childStderr}`)));
  });
  ({ intakeUrl, intakeToken, pid } = JSON.parse(first) as { intakeUrl: string; intakeToken: string; pid: number });
}, 60_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((resolveExit) => child.once("exit", resolveExit));
    child.stdin.end();
    await exited;
  }
});

describe("bodies nested millions deep, under a 400 MB heap", () => {
  const figures: Record<string, number> = {};

  it("each reproduction on each route is refused whole with one request's RSS within 128 MB of idle", async () => {
    expect(listNesting.length).toBeLessThan(12_000);
    expect(objectNesting.length).toBeLessThan(20_000);
    expect(wideRaw.length).toBeLessThan(10_000_000);
    // Warm the handler (first requests load modules) before the idle figure.
    await post(targets()[0]!, gzipSync(Buffer.from('{"event":"warm","properties":{"token":"local-project-token","distinct_id":"w"}}')));
    figures.idleRss = status("VmRSS");
    for (const target of targets()) {
      for (const [body, refusal] of target.bodies) {
        resetPeak();
        const before = status("VmRSS");
        const answer = await post(target, body);
        expect(answer.status, `${target.path}: ${answer.body}`).toBeGreaterThanOrEqual(400);
        expect(answer.status).toBeLessThan(500);
        expect(answer.body).toMatch(refusal);
        const peakAbove = status("VmHWM") - before;
        figures.worstRequestPeakAboveStart = Math.max(figures.worstRequestPeakAboveStart ?? 0, peakAbove);
        expect(peakAbove, target.path).toBeLessThan(PER_REQUEST_RSS_BUDGET_BYTES);
      }
    }
  }, 120_000);

  it("eight copies of each at once: every answer 4xx, the process alive and answering", async () => {
    resetPeak();
    const sends = targets().flatMap((target) => target.bodies.flatMap(([body]) => Array.from({ length: 8 }, () => post(target, body))));
    const answers = await Promise.all(sends);
    figures.concurrentPeakRss = status("VmHWM");
    expect(answers.filter((answer) => answer.status < 400 || answer.status >= 500)).toEqual([]);
    expect(child.exitCode, childStderr).toBeNull();
    const health = await fetch(`${intakeUrl}/healthz`);
    expect(health.status).toBe(200);
    const mb = (bytes: number | undefined) => `${((bytes ?? 0) / 1024 / 1024).toFixed(0)} MB`;
    console.log(
      `intake under a ${HEAP_CAP_MB} MB heap: idle RSS ${mb(figures.idleRss)}, worst single request peak ${mb(figures.worstRequestPeakAboveStart)} above its start,` +
        ` peak with ${sends.length} requests in flight ${mb(figures.concurrentPeakRss)}`,
    );
  }, 180_000);
});
