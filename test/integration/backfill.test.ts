import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { main } from "../../infra/brevo-backfill.js";
import { LOCAL_MIXPANEL_CREDENTIALS, type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { eventually } from "../support/eventually.js";

/**
 * `npm run brevo:backfill` against the local stack `npm start` runs: the sandbox's raw export
 * (what the local Mixpanel holds) → the relay's Brevo mapping → the Brevo queue (fauxqs) → the
 * brevo-forwarder → the strict local Brevo. Counted at the Brevo sandbox, per day.
 */
const ROOT = resolve(import.meta.dirname, "../..");
const DAY_MS = 86_400_000;
const FIRST_DAY = Date.UTC(2026, 0, 10);
const DAYS = ["2026-01-10", "2026-01-11", "2026-01-12", "2026-01-13"];
const PURCHASES_PER_DAY = 30;
let stack: LocalStack;
let dir: string;

/** Environment of a run: the sandbox's export and service account, no announced `npm start`. */
const runEnv = () => ({
  ...Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== "AWS_ENDPOINT_URL")),
  AWS_ACCESS_KEY_ID: "local",
  AWS_SECRET_ACCESS_KEY: "local",
  RELAY_LOCAL_STACK_FILE: join(dir, "no-stack.json"),
  MIXPANEL_EXPORT_URL: `${stack.mixpanelUrl}/api/2.0`,
  MIXPANEL_PROJECT_ID: LOCAL_MIXPANEL_CREDENTIALS.projectId,
  MIXPANEL_SERVICE_ACCOUNT_USERNAME: LOCAL_MIXPANEL_CREDENTIALS.serviceAccountUsername,
  MIXPANEL_SERVICE_ACCOUNT_SECRET: LOCAL_MIXPANEL_CREDENTIALS.serviceAccountSecret,
});

/** What the local Mixpanel holds: per day, mapped purchases and unmapped page views of `prefix` users. */
function seed(prefix: string): void {
  DAYS.forEach((_, dayIndex) => {
    for (let i = 0; i < PURCHASES_PER_DAY; i++) {
      const time = FIRST_DAY + dayIndex * DAY_MS + i * 60_000;
      stack.sandbox?.events.push({ event: "Purchase", properties: { distinct_id: `${prefix}-${i}`, time, $insert_id: `${prefix}-p-${dayIndex}-${i}`, amount: i } });
      stack.sandbox?.events.push({ event: "Viewed", properties: { distinct_id: `${prefix}-${i}`, time: time + 1, $insert_id: `${prefix}-v-${dayIndex}-${i}` } });
    }
  });
}

/** Brevo events of `prefix` users, per UTC day of their event_date. */
function brevoEventsByDay(prefix: string): Record<string, number> {
  const byDay: Record<string, number> = {};
  for (const event of stack.brevoSandbox?.events ?? []) {
    if (!String(event.identifiers.ext_id).startsWith(`${prefix}-`)) continue;
    const day = (event.event_date ?? "").slice(0, 10);
    byDay[day] = (byDay[day] ?? 0) + 1;
  }
  return byDay;
}

async function backfill(args: string[]) {
  const lines: string[] = [];
  const result = await main(["--stage", "local", "--endpoint", stack.awsEndpoint, "--region", "us-east-1", ...args], runEnv(), (line) => lines.push(line));
  if (!result) throw new Error("no result");
  return { ...result, output: lines.join("\n") };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "relay-backfill-"));
  stack = await startLocalStack({ maxReceiveCount: 3, visibilityTimeoutSeconds: 30, forwarderTimeoutMs: 30_000, forwarderBatchSize: 10 });
});
beforeEach(() => stack.sandbox?.reset());
afterAll(async () => {
  await stack.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("npm run brevo:backfill", () => {
  it("a dry run maps and counts every day and queues nothing", async () => {
    seed("dry");
    const run = await backfill(["--from", DAYS[0] ?? "", "--to", DAYS[3] ?? "", "--dry-run", "--checkpoint", join(dir, "dry.json")]);
    expect(run.report).toMatchObject({ dryRun: true, read: 8 * PURCHASES_PER_DAY, mapped: 4 * PURCHASES_PER_DAY, skippedUnmapped: 4 * PURCHASES_PER_DAY, queued: 4 * PURCHASES_PER_DAY, rejected: 0 });
    expect(run.output).toMatch(/dry run \(nothing queued\)/);
    await new Promise((done) => setTimeout(done, 1_000));
    expect(brevoEventsByDay("dry")).toEqual({});
  }, 60_000);

  it("killed with SIGKILL after its first day and resumed: every day's mapped events reach Brevo once, unmapped ones never", async () => {
    seed("kill");
    const checkpoint = join(dir, "kill.json");
    const range = ["--from", DAYS[0] ?? "", "--to", DAYS[3] ?? "", "--event", "Purchase", "--event", "Viewed", "--checkpoint", checkpoint];
    // One export request an hour: the first day goes at once, the second would wait an hour.
    const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "infra/brevo-backfill.ts"), "--stage", "local", "--endpoint", stack.awsEndpoint, "--region", "us-east-1", ...range, "--requests-per-hour", "1"], {
      cwd: ROOT,
      env: runEnv(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let childOutput = "";
    child.stdout?.on("data", (chunk: Buffer) => (childOutput += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (childOutput += chunk.toString()));
    const exited = new Promise<number | null>((done) => child.on("exit", (code) => done(code)));
    const finishedDays = () => {
      try {
        const files = (JSON.parse(readFileSync(checkpoint, "utf8")) as { files: Record<string, { finished: boolean }> }).files;
        return Object.entries(files).filter(([, day]) => day.finished).map(([day]) => day);
      } catch {
        return [];
      }
    };
    await eventually(() => (finishedDays().length > 0 ? true : undefined), 60_000).catch((error: unknown) => {
      throw new Error(`${String(error)}; the backfill's output: ${childOutput.slice(-2000)}`);
    });
    child.kill("SIGKILL");
    expect(await exited).toBeNull();
    expect(finishedDays()).toEqual([DAYS[0]]);
    await eventually(() => (brevoEventsByDay("kill")[DAYS[0] ?? ""] === PURCHASES_PER_DAY ? true : undefined), 30_000);

    const resumed = await backfill([...range, "--resume"]);
    expect(resumed.exitCode).toBe(0);
    expect(resumed.report.days.map((day) => [day.day, day.resumed])).toEqual([[DAYS[0], true], [DAYS[1], false], [DAYS[2], false], [DAYS[3], false]]);
    expect(resumed.report).toMatchObject({ read: 6 * PURCHASES_PER_DAY, mapped: 3 * PURCHASES_PER_DAY, skippedUnmapped: 3 * PURCHASES_PER_DAY, queued: 3 * PURCHASES_PER_DAY });
    expect(resumed.output).toMatch(/1 finished by the earlier run, skipped/);
    const everyDayOnce = Object.fromEntries(DAYS.map((day) => [day, PURCHASES_PER_DAY]));
    await eventually(() => (JSON.stringify(brevoEventsByDay("kill")) === JSON.stringify(everyDayOnce) ? true : undefined), 60_000).catch(() => {
      throw new Error(`Brevo has ${JSON.stringify(brevoEventsByDay("kill"))}, expected ${JSON.stringify(everyDayOnce)}`);
    });
    // Settled: nothing more arrives later (no day sent twice).
    await new Promise((done) => setTimeout(done, 1_500));
    expect(brevoEventsByDay("kill")).toEqual(everyDayOnce);
    const names = new Set((stack.brevoSandbox?.events ?? []).filter((event) => String(event.identifiers.ext_id).startsWith("kill-")).map((event) => event.event_name));
    expect([...names]).toEqual(["order_completed"]);
  }, 180_000);
});
