import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { parquetWriteBuffer } from "hyparquet-writer";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { main } from "../../infra/import.js";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { rejectedBatchSchema, type RejectedBatch } from "../../lib/queue/rejected-store.js";
import { avroFile, currentsKey, schemaFor } from "../unit/sources/avro-support.js";
import { eventually } from "../support/eventually.js";

/**
 * `npm run import` against the local stack `npm start` runs: history files → the relay's
 * mappers → the events queue (fauxqs) → the forwarder → the strict local Mixpanel; rejections
 * in the rejected store. Every fixture is generated here.
 */
const ROOT = resolve(import.meta.dirname, "../..");
let stack: LocalStack;
let dir: string;
const NOW_S = Math.floor(Date.now() / 1000);
const DAY_S = 86_400;

async function rejectedBatches(): Promise<RejectedBatch[]> {
  const listed = await stack.s3.send(new ListObjectsV2Command({ Bucket: stack.rejectedBucket, Prefix: "rejected/" }));
  const batches: RejectedBatch[] = [];
  for (const object of listed.Contents ?? []) {
    const got = await stack.s3.send(new GetObjectCommand({ Bucket: stack.rejectedBucket, Key: object.Key }));
    batches.push(rejectedBatchSchema.parse(JSON.parse(await got.Body!.transformToString())));
  }
  return batches;
}

async function importRun(args: string[]) {
  const lines: string[] = [];
  const result = await main(["--stage", "local", "--endpoint", stack.awsEndpoint, "--region", "us-east-1", ...args], { ...process.env, AWS_ENDPOINT_URL: undefined }, (line) => lines.push(line));
  if (!result) throw new Error("no result");
  return { ...result, output: lines.join("\n") };
}

function ndjsonEvents(count: number, prefix: string, startSeconds = NOW_S - 30 * DAY_S): string {
  const lines: string[] = [];
  for (let i = 0; i < count; i += 1) {
    lines.push(JSON.stringify({ event: i % 2 === 0 ? "Viewed" : "Bought", properties: { distinct_id: `${prefix}-${i % 997}`, time: startSeconds + i, n: i } }));
  }
  return `${lines.join("\n")}\n`;
}

/** The distinct `$insert_id`s Mixpanel holds for one fixture's users (what it counts after dedupe). */
function uniqueInsertIds(distinctIdPrefix: string): Set<unknown> {
  return new Set(stack.sandbox?.events.filter((event) => String(event.properties.distinct_id).startsWith(distinctIdPrefix)).map((event) => event.properties.$insert_id));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "relay-import-"));
  stack = await startLocalStack({ maxReceiveCount: 3, visibilityTimeoutSeconds: 30, forwarderTimeoutMs: 30_000, forwarderBatchSize: 10 });
});
afterAll(async () => {
  await stack.stop();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => stack.sandbox?.reset());

describe("npm run import", () => {
  it("lands every valid row of a 100,000-event NDJSON.gz once and every invalid one in the rejected store with its reason", async () => {
    const valid = 100_000;
    const bad = [
      "{not json",
      JSON.stringify({ event: "Bad", properties: { distinct_id: "undefined", time: NOW_S } }),
      JSON.stringify({ event: "Future", properties: { distinct_id: "u", time: NOW_S + 7200 } }),
    ];
    const file = join(dir, "history.ndjson.gz");
    writeFileSync(file, gzipSync(ndjsonEvents(valid, "nd") + `${bad.join("\n")}\n`));

    const dry = await importRun([file, "--dry-run", "--checkpoint", join(dir, "dry.json")]);
    expect(dry.exitCode).toBe(0);
    expect(dry.report).toMatchObject({ read: valid + 3, accepted: valid, rejected: 3, sent: 0 });
    expect(Object.fromEntries(Object.entries(dry.report.byReason).map(([code, entry]) => [code, entry.count]))).toEqual({ invalid_json: 1, banned_distinct_id: 1, invalid_time: 1 });
    expect(dry.report.byReason.invalid_json?.examples[0]).toMatchObject({ file, position: valid + 1 });
    await new Promise((done) => setTimeout(done, 500));
    expect(stack.sandbox?.events).toHaveLength(0);

    const run = await importRun([file, "--checkpoint", join(dir, "nd.json")]);
    expect(run.exitCode).toBe(0);
    expect(run.report).toMatchObject({ read: valid + 3, accepted: valid, rejected: 3, sent: valid });
    expect(run.output).toMatch(/rejected invalid_json: 1/);
    await eventually(() => (uniqueInsertIds("nd-").size === valid ? true : undefined), 60_000);
    expect(new Set(stack.sandbox?.events.map((event) => event.properties.n)).size).toBe(valid);
    const stored = (await rejectedBatches()).filter((batch) => batch.correlationId.startsWith("import-")).flatMap((batch) => batch.items.map((item) => [item.index, item.code]));
    expect(stored).toEqual(expect.arrayContaining([[valid + 1, "invalid_json"], [valid + 2, "banned_distinct_id"], [valid + 3, "invalid_time"]]));
  }, 120_000);

  it("maps CSV columns with --map, reads Parquet and three Braze Currents Avro files from a folder", async () => {
    const csv = join(dir, "mapped.csv");
    writeFileSync(csv, `name,user,ts,plan\nSigned Up,csv-1,${NOW_S - 100},pro\nSigned Up,csv-2,${new Date((NOW_S - 50) * 1000).toISOString()},\nNo Time,csv-3,,free\n`);
    const csvRun = await importRun([csv, "--map", "name=event", "--map", "user=distinct_id", "--map", "ts=time", "--checkpoint", join(dir, "csv.json")]);
    expect(csvRun.report).toMatchObject({ read: 3, accepted: 2, rejected: 1 });
    expect(csvRun.report.byReason.missing_time?.examples[0]).toMatchObject({ position: 3 });
    const first = await eventually(() => stack.sandbox?.events.find((event) => event.properties.distinct_id === "csv-1"));
    expect(first).toMatchObject({ event: "Signed Up", properties: { time: (NOW_S - 100) * 1000, plan: "pro" } });
    const second = await eventually(() => stack.sandbox?.events.find((event) => event.properties.distinct_id === "csv-2"));
    expect(second.properties.time).toBe((NOW_S - 50) * 1000);
    expect(second.properties.plan).toBeUndefined();

    const parquet = join(dir, "warehouse.parquet");
    writeFileSync(
      parquet,
      Buffer.from(
        parquetWriteBuffer({
          columnData: [
            { name: "event", data: ["Paid", "Paid", "Refunded"], type: "STRING" },
            { name: "distinct_id", data: ["pq-1", "pq-2", "pq-3"], type: "STRING" },
            { name: "time", data: [BigInt(NOW_S - 10), BigInt(NOW_S - 9), BigInt(NOW_S - 8)], type: "INT64" },
            { name: "amount", data: [9.5, 12, 3.25], type: "DOUBLE" },
          ],
        }),
      ),
    );
    const parquetRun = await importRun([parquet, "--checkpoint", join(dir, "pq.json")]);
    expect(parquetRun.report).toMatchObject({ read: 3, accepted: 3, rejected: 0 });
    const paid = await eventually(() => stack.sandbox?.events.find((event) => event.properties.distinct_id === "pq-2"));
    expect(paid).toMatchObject({ event: "Paid", properties: { amount: 12, time: (NOW_S - 9) * 1000 } });

    const avroFolder = join(dir, "currents");
    for (const [n, name] of ["Opened", "Clicked", "Shared"].entries()) {
      const record = { id: `0b8a5a43-6f0e-4f57-9a49-6c1d2c3c0a1${n}`, user_id: `5f1d0c7e9d3b2a001234567${n}`, external_user_id: `avro-user-${n}`, time: NOW_S - 60, name, properties: JSON.stringify({ n }) };
      const path = join(avroFolder, currentsKey("users.behaviors.CustomEvent", `part-${n}.avro`));
      mkdirSync(resolve(path, ".."), { recursive: true });
      writeFileSync(path, await avroFile(schemaFor("CustomEvent", [record]), [record]));
    }
    const avroRun = await importRun([avroFolder, "--checkpoint", join(dir, "avro.json")]);
    expect(avroRun.report.files).toHaveLength(3);
    expect(avroRun.report).toMatchObject({ read: 3, accepted: 3, rejected: 0 });
    const opened = await eventually(() => stack.sandbox?.events.find((event) => event.properties.distinct_id === "avro-user-0"));
    expect(opened.event).toBe("[Braze Custom Event] Opened");
    expect(opened.properties.$insert_id).toBe("0b8a5a43-6f0e-4f57-9a49-6c1d2c3c0a10");
  }, 60_000);

  it("--from, --to and --event keep only the rows asked for", async () => {
    const file = join(dir, "window.ndjson");
    const start = NOW_S - 10 * DAY_S;
    writeFileSync(file, ndjsonEvents(100, "win", start));
    const run = await importRun([file, "--from", String(start + 20), "--to", new Date((start + 40) * 1000).toISOString(), "--event", "Bought", "--checkpoint", join(dir, "win.json")]);
    expect(run.report.accepted).toBe(10);
    expect(run.report.skipped).toEqual({ event_not_included: 50, before_from: 10, not_before_to: 30 });
    await eventually(() => (uniqueInsertIds("win-").size === 10 ? true : undefined));
    const arrived = stack.sandbox?.events.filter((event) => String(event.properties.distinct_id).startsWith("win-")) ?? [];
    expect(arrived.every((event) => event.event === "Bought" && Number(event.properties.n) >= 20 && Number(event.properties.n) < 40)).toBe(true);
  }, 30_000);

  it("names the file and position of a truncated gzip, a ragged CSV row, an unsupported Parquet type and an unreadable file, and goes on", async () => {
    const whole = gzipSync(ndjsonEvents(5_000, "trunc"));
    const truncated = join(dir, "truncated.ndjson.gz");
    writeFileSync(truncated, whole.subarray(0, Math.floor(whole.length / 2)));
    const ragged = join(dir, "ragged.csv");
    writeFileSync(ragged, `event,distinct_id,time\nA,r-1,${NOW_S}\nB,r-2,${NOW_S},extra\nC,r-3,${NOW_S}\n`);
    const binary = join(dir, "binary.parquet");
    writeFileSync(binary, Buffer.from(parquetWriteBuffer({ columnData: [{ name: "blob", data: [new Uint8Array([1, 2, 3])], type: "BYTE_ARRAY" }] })));
    const missing = join(dir, "does-not-exist.ndjson");
    const good = join(dir, "after.ndjson");
    writeFileSync(good, ndjsonEvents(7, "after"));

    const run = await importRun([truncated, ragged, binary, missing, good, "--checkpoint", join(dir, "bad.json")]);
    expect(run.exitCode).toBe(3);
    expect(run.report.failedFiles).toEqual([truncated, ragged, binary, missing]);
    const failures = run.report.files.map((file) => file.failed ?? "");
    expect(failures[0]).toMatch(new RegExp(`^${truncated}: truncated gzip.*after row \\d+`));
    expect(failures[1]).toMatch(new RegExp(`^${ragged}: .*line 3`));
    expect(failures[2]).toMatch(new RegExp(`^${binary}: column blob has the unsupported type BYTE_ARRAY`));
    expect(failures[3]).toMatch(new RegExp(`^${missing}: .*ENOENT`));
    // Rows before each failure are sent, and the good file after them is imported whole.
    expect(run.report.files[1]?.accepted).toBe(1);
    expect(run.report.files[4]).toMatchObject({ rows: 7, accepted: 7 });
    await eventually(() => (stack.sandbox?.events.filter((event) => String(event.properties.distinct_id).startsWith("after-")).length === 7 ? true : undefined));
  }, 60_000);

  it("--via direct sends straight to /import in strict mode, backs off a 429 and stores what Mixpanel refuses", async () => {
    const file = join(dir, "direct.ndjson.gz");
    writeFileSync(file, gzipSync(ndjsonEvents(5_000, "direct") + `${JSON.stringify({ event: "Bad", properties: { distinct_id: "undefined", time: NOW_S } })}\n`));
    stack.sandbox?.failNext({ path: "/import", status: 429, body: '{"error":"rate limited"}' });
    const run = await importRun([file, "--via", "direct", "--concurrency", "3", "--batch-rows", "2500", "--checkpoint", join(dir, "direct.json")]);
    expect(run.exitCode).toBe(0);
    expect(run.report).toMatchObject({ read: 5_001, accepted: 5_000, rejected: 1, sent: 5_000 });
    expect(run.output).toMatch(/answered 429: retrying/);
    expect(uniqueInsertIds("direct-").size).toBe(5_000);
    const imports = stack.sandbox?.requests.filter((request) => request.path === "/import") ?? [];
    expect(imports.some((request) => request.status === 429)).toBe(true);
    expect(imports.every((request) => request.status === 429 || request.query.strict === "1")).toBe(true);
    const stored = (await rejectedBatches()).filter((batch) => batch.correlationId.startsWith("import-")).flatMap((batch) => batch.items.map((item) => [item.index, item.code]));
    expect(stored).toContainEqual([5_001, "banned_distinct_id"]);
  }, 60_000);

  it("resumes a run killed with SIGKILL halfway: every row in Mixpanel exactly once after dedupe", async () => {
    const total = 60_000;
    const file = join(dir, "killed.ndjson.gz");
    writeFileSync(file, gzipSync(ndjsonEvents(total, "kill")));
    const checkpoint = join(dir, "killed-checkpoint.json");
    const args = ["--stage", "local", "--endpoint", stack.awsEndpoint, "--region", "us-east-1", file, "--checkpoint", checkpoint, "--batch-rows", "1000"];
    const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "infra/import.ts"), ...args], {
      cwd: ROOT,
      env: { ...process.env, AWS_ACCESS_KEY_ID: "local", AWS_SECRET_ACCESS_KEY: "local", AWS_ENDPOINT_URL: "" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let childErrors = "";
    child.stderr?.on("data", (chunk: Buffer) => (childErrors += chunk.toString()));
    const exited = new Promise<number | null>((done) => child.on("exit", (code) => done(code)));
    // Kill once some, but not all, of the file is checkpointed.
    await eventually(() => {
      try {
        const done = (JSON.parse(readFileSync(checkpoint, "utf8")) as { files: Record<string, { rowsDone: number }> }).files[file]?.rowsDone ?? 0;
        return done >= total / 4 ? true : undefined;
      } catch {
        return undefined;
      }
    }, 60_000).catch((error: unknown) => {
      throw new Error(`${String(error)}; the import's stderr: ${childErrors.slice(-2000)}`);
    });
    child.kill("SIGKILL");
    expect(await exited).toBeNull();
    const killedAt = (JSON.parse(readFileSync(checkpoint, "utf8")) as { files: Record<string, { rowsDone: number; finished: boolean }> }).files[file];
    expect(killedAt?.finished).toBe(false);
    expect(killedAt?.rowsDone).toBeLessThan(total);

    const resumed = await importRun([file, "--checkpoint", checkpoint, "--batch-rows", "1000", "--resume"]);
    expect(resumed.exitCode).toBe(0);
    expect(resumed.report.files[0]?.resumedPast).toBe(killedAt?.rowsDone);
    expect(resumed.report.read).toBe(total - (killedAt?.rowsDone ?? 0));
    await eventually(() => (uniqueInsertIds("kill-").size === total ? true : undefined), 60_000);
    const rows = new Set(stack.sandbox?.events.filter((event) => String(event.properties.distinct_id).startsWith("kill-")).map((event) => event.properties.n));
    expect(rows.size).toBe(total);
  }, 120_000);
});
