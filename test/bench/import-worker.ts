import { rmSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { loadStageConfig, stageConfigPath } from "../../lib/config/stage.js";
import { fileCheckpointStore } from "../../lib/import/checkpoint.js";
import { MIXPANEL_IMPORT_BYTES_PER_MINUTE, ROLLING_WINDOW_MS, rollingByteBudget } from "../../lib/import/byte-budget.js";
import { directSender } from "../../lib/import/direct.js";
import { runImport } from "../../lib/import/run.js";
import { realRetryDeps } from "../../lib/http/retry.js";
import { IMPORT_MAX_RECORDS, createIngestionClient } from "../../lib/mixpanel/ingestion.js";

/**
 * One import of BENCH_IMPORT_FILE (NDJSON.gz) into the loopback Mixpanel fake at BENCH_FAKE_URL,
 * by BENCH_IMPORT_TOOL: `relay` (lib/import with `--via direct`'s sender: strict /import,
 * Mixpanel's rules, insert ids, PII, the 2 GB/minute budget, a checkpoint per batch) or `mixpanel-import` (3.1.43, strict, no transforms),
 * both with BENCH_IMPORT_CONCURRENCY requests in flight. Prints RESULT {…} with wall time,
 * CPU and peak RSS of this process.
 */
const file = process.env.BENCH_IMPORT_FILE ?? "";
const fakeUrl = process.env.BENCH_FAKE_URL ?? "";
const tool = process.env.BENCH_IMPORT_TOOL ?? "relay";
const concurrency = Number(process.env.BENCH_IMPORT_CONCURRENCY ?? 10);

async function fakeCount(): Promise<number> {
  return ((await (await fetch(`${fakeUrl}/_count`)).json()) as { received: number }).received;
}

const before = await fakeCount();
const cpuStart = process.cpuUsage();
const started = performance.now();
let processed = 0;

const checkpointPath = join(tmpdir(), `relay-import-bench-${process.pid}.json`);
if (tool === "relay") {
  const config = loadStageConfig(stageConfigPath("local"), "local");
  const client = createIngestionClient({
    fetch: globalThis.fetch,
    baseUrl: fakeUrl,
    credentials: async () => ({ project_id: "1", service_account_username: "bench", service_account_secret: "bench", project_token: "bench" }),
    importMaxBytes: 10_000_000,
    concurrency: 1,
    timeoutMs: 15_000,
    retryDeps: realRetryDeps(),
    nowMs: Date.now,
  });
  const report = await runImport(
    {
      files: [{ ref: { kind: "local", path: file }, format: "ndjson" }],
      kind: "events",
      source: "native",
      columns: {},
      filter: {},
      dryRun: false,
      batchRows: IMPORT_MAX_RECORDS,
      inFlightBatches: concurrency,
      checkpoint: fileCheckpointStore(checkpointPath),
      resume: false,
      runKey: "bench",
    },
    {
      config,
      policy: undefined,
      sendBatch: directSender({
        client,
        rejected: { put: async () => "" },
        importBudget: rollingByteBudget(MIXPANEL_IMPORT_BYTES_PER_MINUTE, ROLLING_WINDOW_MS, { nowMs: Date.now, sleep: (ms) => new Promise((done) => setTimeout(done, ms)) }),
      }),
      nowMs: Date.now,
      log: () => undefined,
    },
  );
  processed = report.sent;
  rmSync(checkpointPath, { force: true });
} else {
  // mixpanel-import reads its endpoint from a getter on its Job class; its `got` transport honours
  // it (the default undici pool is bound to api.mixpanel.com), so the fake stands in for Mixpanel.
  const require = createRequire(import.meta.url);
  const Job = require("mixpanel-import/components/job.js") as { prototype: object };
  Object.defineProperty(Job.prototype, "url", { get: () => `${fakeUrl}/import`, configurable: true });
  const mpImport = require("mixpanel-import") as (creds: object, data: string, options: object) => Promise<{ success: number; failed: number }>;
  const result = await mpImport({ acct: "bench", pass: "bench", project: "1", token: "bench" }, file, {
    recordType: "event",
    workers: concurrency,
    strict: true,
    compress: true,
    transport: "got",
    verbose: false,
    showProgress: false,
    logs: false,
    fixData: false,
    streamFormat: "jsonl",
  });
  processed = result.success;
}

const wallMs = performance.now() - started;
const cpu = process.cpuUsage(cpuStart);
const received = (await fakeCount()) - before;
const cpuMs = (cpu.user + cpu.system) / 1000;
process.stdout.write(
  `RESULT ${JSON.stringify({ tool, processed, received, wallMs, eventsPerSecond: received / (wallMs / 1000), cpuMs, cpuUsPerEvent: (cpuMs * 1000) / Math.max(received, 1), peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024) })}\n`,
);
process.exit(0);
