import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import * as z from "zod";
import { FIRST_CALL, coldStart } from "./cold-start.js";
import { runResultChild } from "../support/result-child.js";
import { INSERT_ID_HASH_LENGTH } from "../../lib/observability/trace-ids.js";
import { ASSUMPTIONS, type CostRow, PRICES_USD, costPerMillion } from "./cost-model.js";

/**
 * `npm run bench`: a baseline (the git ref BENCH_BASELINE_REF, by default the last commit before
 * the v2 envelope and the intake's one-pass record line) against the working tree, in the same run, interleaved
 * (old, new, old, new, …) so a busy machine slows both alike; medians are reported.
 * Every measurement runs in its own process. Prints a table and writes
 * bench/results/<date>.json. Loopback only.
 *
 *  - forwarder: the real Lambda handler, invocation by invocation, against a loopback
 *    Mixpanel fake (own process) answering after 0 ms and 100 ms;
 *  - intake: CPU per 10k events and handler latency (p50/p99) per source, the variants taking
 *    turns slice by slice in one process per repeat (intake-worker.ts), with the median ratio of
 *    each slice's CPU to BENCH_COLDSTART_BASELINE_REF's;
 *  - cold start: bundle sizes, and import + first AWS call of every function's bundle against the
 *    code at BENCH_COLDSTART_BASELINE_REF (default 9d4a7d1, the last code that signed its own AWS
 *    requests), on BENCH_COLD_NODE (set it to a Node 24 binary: Lambda's runtime);
 *  - import (opt-in, BENCH_SECTIONS=import): `npm run import --via direct` beside mixpanel-import
 *    3.1.43 on a 1 M-event NDJSON.gz (BENCH_IMPORT_EVENTS) against the fake at 100 ms, 10 in flight;
 *  - cohorts (opt-in, BENCH_SECTIONS=cohorts): CPU of diffing a 1 M-member cohort through the
 *    real export path (cohort-diff.bench.ts), BENCH_COHORT_MEMBERS to change the size.
 */
const repo = resolve(process.cwd());
const baselineRef = process.env.BENCH_BASELINE_REF ?? "982b043";
const repeats = Number(process.env.BENCH_REPEATS ?? 3);
const events = Number(process.env.BENCH_EVENTS ?? 200_000);
const latencies = (process.env.BENCH_LATENCIES ?? "0,100").split(",").map(Number);
const newConcurrency = Number(process.env.BENCH_NEW_CONCURRENCY ?? 10);
/** serverless.yml's importConcurrency (and IMPORT_CONCURRENCY's default in lib/config/env.ts). */
const DEPLOYED_IMPORT_CONCURRENCY = 5;
const sections = new Set((process.env.BENCH_SECTIONS ?? "forwarder,intake,coldstart").split(","));

const coldStartBaselineRef = process.env.BENCH_COLDSTART_BASELINE_REF ?? "9d4a7d1";

function prepareBaseline(baselineRef: string): string {
  const dir = join(tmpdir(), `relay-bench-baseline-${baselineRef}`);
  if (!existsSync(join(dir, "package.json"))) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const archive = execFileSync("git", ["archive", baselineRef], { cwd: repo, maxBuffer: 1 << 30 });
    execFileSync("tar", ["-x", "-C", dir], { input: archive });
    // The baseline's code with its own packages: shared when the lockfiles match, else installed
    // from the baseline's own lockfile (npm's cache makes this quick after the first time).
    if (readFileSync(join(dir, "package-lock.json"), "utf8") === readFileSync(join(repo, "package-lock.json"), "utf8")) {
      symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"));
    } else {
      execFileSync("npm", ["ci", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts"], { cwd: dir, stdio: "ignore" });
      // esbuild's binary comes from its optional platform package; no install script needed.
    }
  }
  return dir;
}

function runWorker(script: string, env: Record<string, string>): Promise<unknown> {
  return runResultChild(["--import", "tsx", join(repo, "test/bench", script)], { cwd: repo, env: { ...process.env, ...env }, timeoutMs: 600_000 });
}

async function startFake(): Promise<{ url: string; child: ChildProcess; setLatency(ms: number): Promise<void> }> {
  const child = spawn(process.execPath, ["--import", "tsx", join(repo, "test/bench/mixpanel-fake.ts")], { cwd: repo, stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((done, fail) => {
    const timer = setTimeout(() => fail(new Error("fake Mixpanel did not start")), 30_000);
    child.stdout?.on("data", (chunk: Buffer) => {
      const match = /LISTENING (\d+)/.exec(chunk.toString());
      if (match) {
        clearTimeout(timer);
        done(Number(match[1]));
      }
    });
  });
  const url = `http://127.0.0.1:${port}`;
  return { url, child, setLatency: async (ms) => void (await fetch(`${url}/_latency/${ms}`, { method: "POST" })) };
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
};

/** Prepared on first use: a run of only some variants (BENCH_FORWARDER_VARIANTS, BENCH_INTAKE_VARIANTS) may not need it. */
let baselineDir: string | undefined;
const baseline = (): string => (baselineDir ??= prepareBaseline(baselineRef));
/** A comma-separated subset of a section's variants, from the environment (all when unset). */
const chosen = <T extends string>(variable: string, all: readonly T[]): T[] => {
  const names = process.env[variable]?.split(",");
  return names ? all.filter((variant) => names.includes(variant)) : [...all];
};
/** The code before the AWS SDK clients (BENCH_COLDSTART_BASELINE_REF): the deployed settings' forwarder and the intake run on it too. */
const sdkBaseline = prepareBaseline(coldStartBaselineRef);
const results: Record<string, unknown> = {
  date: new Date().toISOString(),
  node: process.version,
  machine: { cpus: cpus().length, model: cpus()[0]?.model ?? "?", memoryGiB: Math.round(totalmem() / 2 ** 30) },
  baselineRef,
  repeats,
  note: process.env.BENCH_NOTE ?? "",
};
const table: string[][] = [];

type ForwarderRun = { eventsPerSecond: number; cpuMsPer10k: number; eventsPerMessage: number; invocations: number; failures: number };
const forwarderMedians: Record<string, { eventsPerSecond: number; cpuMsPer10k: number; eventsPerMessage: number }> = {};

if (sections.has("forwarder")) {
  const fake = await startFake();
  // old: the baseline's code and settings (3 requests in flight); new3: the new code at the
  // baseline's 3 in flight; deployed: the new code at its deployed IMPORT_CONCURRENCY (serverless.yml
  // importConcurrency, with forwarderMaxConcurrency lowered so a project sees the same 15 clients);
  // new: more in flight. The -braze variants queue 100-event intake requests (one small message
  // each), as Braze Currents sends them.
  type Variant = "old" | "new3" | "deployed" | "base-deployed" | "new" | "old-braze" | "deployed-braze";
  const labels: Record<Variant, string> = {
    old: "baseline (v1, ≤20 msg/inv, 2000-event intake requests, 3 in flight)",
    new3: "new (v2, ≤100 msg/inv, 2000-event intake requests, 3 in flight)",
    deployed: `new (v2, ≤100 msg/inv, 2000-event intake requests, ${DEPLOYED_IMPORT_CONCURRENCY} in flight, deployed)`,
    "base-deployed": `${coldStartBaselineRef} (v2, ≤100 msg/inv, 2000-event intake requests, ${DEPLOYED_IMPORT_CONCURRENCY} in flight, deployed)`,
    new: `new (v2, ≤100 msg/inv, 2000-event intake requests, ${newConcurrency} in flight)`,
    "old-braze": "baseline (v1, ≤20 msg/inv, 100-event intake requests, 3 in flight)",
    "deployed-braze": `new (v2, ≤100 msg/inv, 100-event intake requests, ${DEPLOYED_IMPORT_CONCURRENCY} in flight, deployed)`,
  };
  const concurrencyOf: Record<Variant, number> = { old: 3, new3: 3, deployed: DEPLOYED_IMPORT_CONCURRENCY, "base-deployed": DEPLOYED_IMPORT_CONCURRENCY, new: newConcurrency, "old-braze": 3, "deployed-braze": DEPLOYED_IMPORT_CONCURRENCY };
  const rootOf = (variant: Variant): string => (variant.startsWith("old") ? baseline() : variant.startsWith("base") ? sdkBaseline : repo);
  const forwarderEnv = (variant: Variant): Record<string, string> => ({
    BENCH_ROOT: rootOf(variant),
    // Each tree reads its own stage config: the baseline's schema refuses keys added since.
    RELAY_CONFIG_FILE: join(rootOf(variant), "config/local.json"),
    BENCH_ENVELOPE: variant.startsWith("old") ? "v1" : "v2",
    BENCH_EVENTS: String(variant.endsWith("braze") ? Math.min(events, 100_000) : events),
    BENCH_INTAKE_BATCH: variant.endsWith("braze") ? "100" : "2000",
    // serverless.yml batchSize: 20 in the baseline, 100 now (Lambda's 6 MB payload cap applies to both).
    BENCH_MESSAGES_PER_INVOCATION: variant.startsWith("old") ? "20" : "100",
    IMPORT_CONCURRENCY: String(concurrencyOf[variant]),
    MIXPANEL_API_URL: fake.url,
    MIXPANEL_PROJECT_ID: "1",
    MIXPANEL_SERVICE_ACCOUNT_USERNAME: "bench",
    MIXPANEL_SERVICE_ACCOUNT_SECRET: "bench-secret",
    REJECTED_BUCKET: "bench-rejected",
    AWS_REGION: "us-east-1",
    AWS_ENDPOINT_URL: "http://127.0.0.1:9",
    AWS_ACCESS_KEY_ID: "bench",
    AWS_SECRET_ACCESS_KEY: "bench",
    POWERTOOLS_LOG_LEVEL: "INFO",
  });
  const forwarder: Record<string, unknown> = {};
  try {
    for (const latency of latencies) {
      await fake.setLatency(latency);
      const variants: Variant[] = chosen<Variant>(
        "BENCH_FORWARDER_VARIANTS",
        latency === 100 ? ["old", "new3", "base-deployed", "deployed", "new", "old-braze", "deployed-braze"] : ["old", "new3", "base-deployed", "deployed", "new"],
      );
      const runs: Partial<Record<Variant, ForwarderRun[]>> = {};
      for (let i = 0; i < repeats; i++) {
        for (const variant of variants) {
          const result = (await runWorker("forwarder-worker.ts", forwarderEnv(variant))) as ForwarderRun;
          if (result.failures > 0) throw new Error(`forwarder ${variant}: ${result.failures} failed messages`);
          (runs[variant] ??= []).push(result);
          console.error(`forwarder ${variant} @${latency} ms: ${Math.round(result.eventsPerSecond)} ev/s, ${result.cpuMsPer10k.toFixed(0)} CPU-ms/10k`);
        }
      }
      forwarder[`latency${latency}ms`] = runs;
      for (const variant of variants) {
        const list = runs[variant] ?? [];
        const first = list[0];
        const summary = {
          eventsPerSecond: median(list.map((r) => r.eventsPerSecond)),
          cpuMsPer10k: median(list.map((r) => r.cpuMsPer10k)),
          eventsPerMessage: first?.eventsPerMessage ?? Number.NaN,
        };
        forwarderMedians[`${variant}@${latency}`] = summary;
        table.push([
          `forwarder ${labels[variant]}`,
          `${latency} ms Mixpanel latency`,
          `${Math.round(summary.eventsPerSecond).toLocaleString("en-US")} ev/s`,
          `${summary.cpuMsPer10k.toFixed(0)} CPU-ms/10k`,
          `${summary.eventsPerMessage.toFixed(0)} ev/msg, ${first?.invocations ?? 0} inv`,
        ]);
      }
    }
  } finally {
    fake.child.kill("SIGTERM");
  }
  results.forwarder = forwarder;
  results.forwarderMedians = forwarderMedians;
}

/** Sub-millisecond latencies (one-event Adobe calls) keep two significant digits instead of printing 0.0. */
const formatMs = (ms: number): string => (ms < 1 ? ms.toPrecision(2) : ms.toFixed(1));

const intakeMedians: Record<string, { cpuMsPer10k: number; sqsBytesPerEvent: number; sqsMessagesPerEvent: number; eventsPerRequest: number; requestBytes: number }> = {};

if (sections.has("intake")) {
  type IntakeRow = {
    label: string; events: number; requests: number; requestBytes: number; cpuMsPer10k: number; p50Ms: number; p99Ms: number;
    sqsMessages: number; sqsBytes: number; sliceRatios?: number[];
  };
  const runs: Record<"old" | "base" | "new", IntakeRow[][]> = { old: [], base: [], new: [] };
  const intakeRoot = { old: baseline, base: () => sdkBaseline, new: () => repo };
  const intakeVariants = chosen("BENCH_INTAKE_VARIANTS", ["old", "base", "new"] as const);
  // Every repeat is one process running the variants slice by slice in turn (intake-worker.ts);
  // the slice ratios are against the code before the AWS SDK clients (BENCH_COLDSTART_BASELINE_REF).
  const reference = intakeVariants.includes("base") ? "base" : intakeVariants[0];
  for (let i = 0; i < repeats; i++) {
    const roots = Object.fromEntries(intakeVariants.map((variant) => [variant, intakeRoot[variant]()]));
    const result = (await runWorker("intake-worker.ts", { BENCH_INTAKE_ROOTS: JSON.stringify(roots), BENCH_INTAKE_REFERENCE: reference ?? "" })) as Record<string, IntakeRow[]>;
    for (const variant of intakeVariants) runs[variant].push(result[variant] ?? []);
  }
  results.intake = runs;
  const variantName = (variant: "old" | "base" | "new") => (variant === "old" ? "baseline" : variant === "base" ? coldStartBaselineRef : "new");
  for (const variant of intakeVariants) {
    (runs[variant][0] ?? []).forEach((row, index) => {
      const rows = runs[variant].map((run) => run[index] as IntakeRow);
      const key = row.label.includes("~300") ? "native-small" : (row.label.split(" ")[0] ?? "");
      intakeMedians[`${variant}:${key}`] = {
        cpuMsPer10k: median(rows.map((r) => r.cpuMsPer10k)),
        sqsBytesPerEvent: row.sqsBytes / row.events,
        sqsMessagesPerEvent: row.sqsMessages / row.events,
        eventsPerRequest: row.events / row.requests,
        requestBytes: row.requestBytes,
      };
    });
  }
  results.intakeMedians = intakeMedians;
  for (const variant of intakeVariants) {
    const labels = runs[variant][0]?.map((row) => row.label) ?? [];
    labels.forEach((label, index) => {
      const rows = runs[variant].map((run) => run[index] as IntakeRow);
      const sliceRatios = rows.flatMap((r) => r.sliceRatios ?? []);
      table.push([
        `intake ${variantName(variant)}: ${label}`,
        `${median(rows.map((r) => r.cpuMsPer10k)).toFixed(0)} CPU-ms/10k`,
        sliceRatios.length > 0 ? `${median(sliceRatios).toFixed(2)}× ${variantName(reference ?? "base")} (median of ${sliceRatios.length} slices side by side)` : "",
        `p50 ${formatMs(median(rows.map((r) => r.p50Ms)))} ms`,
        `p99 ${formatMs(median(rows.map((r) => r.p99Ms)))} ms`,
        `${rows[0]?.sqsMessages ?? 0} SQS msgs, ${((rows[0]?.sqsBytes ?? 0) / 1e6).toFixed(1)} MB`,
      ]);
    });
  }
}

if (sections.has("coldstart")) {
  const cold = await coldStart(prepareBaseline(coldStartBaselineRef), repo, repeats);
  results.coldStart = { baselineRef: coldStartBaselineRef, ...cold };
  for (const row of cold.rows) {
    const share =
      row.shareOfBaseline === undefined || row.cpuShareOfBaseline === undefined
        ? ""
        : `${row.shareOfBaseline.toFixed(2)}× / ${row.cpuShareOfBaseline.toFixed(2)}× CPU of ${coldStartBaselineRef}`;
    table.push([
      `bundle ${row.variant === "old" ? coldStartBaselineRef : "new"}: ${row.name}`,
      `${row.kib} KiB (${row.startupKib} KiB at start)`,
      `import ${row.importMs.toFixed(0)} ms, + first AWS call ${row.coldMs.toFixed(0)} ms (${row.coldCpuMs.toFixed(0)} CPU-ms), ${cold.node} --enable-source-maps (medians)`,
      share,
      FIRST_CALL[row.name] ?? "",
    ]);
  }
}

if (sections.has("cohorts")) {
  // Opt-in (BENCH_SECTIONS=...,cohorts): ~30 s per repeat. The working tree only: the export path's
  // store and staging formats changed, so the baseline's modules do not fit this driver.
  const members = Number(process.env.BENCH_COHORT_MEMBERS ?? 1_000_000);
  type CohortRun = { partitions: number; cpuS: Record<"stage" | "spill" | "diff" | "emit" | "diffed", number>; wallS: { diffed: number }; peakRssMb: number };
  const runs: CohortRun[] = [];
  for (let i = 0; i < repeats; i++) {
    const run = (await runWorker("cohort-diff.bench.ts", { BENCH_COHORT_WORKER: String(members) })) as CohortRun;
    runs.push(run);
    console.error(`cohorts ${members}: diffed ${run.cpuS.diffed.toFixed(2)} s CPU, peak RSS ${run.peakRssMb} MB`);
  }
  const m = (f: (r: CohortRun) => number) => median(runs.map(f));
  results.cohorts = { members, runs, median: { diffedCpuS: m((r) => r.cpuS.diffed), stageCpuS: m((r) => r.cpuS.stage), spillCpuS: m((r) => r.cpuS.spill), diffCpuS: m((r) => r.cpuS.diff), emitCpuS: m((r) => r.cpuS.emit), peakRssMb: m((r) => r.peakRssMb) } };
  table.push([
    `cohort diff, ${members.toLocaleString("en-US")} members (${runs[0]?.partitions ?? "?"} partitions), new code`,
    `diffed ${m((r) => r.cpuS.diffed).toFixed(2)} s CPU (stage+spill+diff)`,
    `stage ${m((r) => r.cpuS.stage).toFixed(2)}, spill ${m((r) => r.cpuS.spill).toFixed(2)}, diff ${m((r) => r.cpuS.diff).toFixed(2)}`,
    `emit ${m((r) => r.cpuS.emit).toFixed(2)} s CPU`,
    `peak RSS ${m((r) => r.peakRssMb)} MB`,
  ]);
}

if (sections.has("import")) {
  // `npm run import --via direct` beside mixpanel-import 3.1.43 on the same NDJSON.gz and the same
  // fake at 100 ms, both with 10 requests in flight, interleaved (relay, mixpanel-import, …).
  const count = Number(process.env.BENCH_IMPORT_EVENTS ?? 1_000_000);
  const importFile = join(tmpdir(), `relay-import-bench-${count}.ndjson.gz`);
  if (!existsSync(importFile)) writeFileSync(importFile, importFixture(count));
  const fake = await startFake();
  await fake.setLatency(100);
  type ImportRun = { tool: string; received: number; eventsPerSecond: number; cpuUsPerEvent: number; peakRssMb: number };
  const runs: Record<string, ImportRun[]> = { relay: [], "mixpanel-import": [] };
  try {
    for (let i = 0; i < repeats; i++) {
      for (const tool of ["relay", "mixpanel-import"] as const) {
        const run = (await runWorker("import-worker.ts", { BENCH_IMPORT_FILE: importFile, BENCH_FAKE_URL: fake.url, BENCH_IMPORT_TOOL: tool, BENCH_IMPORT_CONCURRENCY: "10" })) as ImportRun;
        if (run.received !== count) throw new Error(`${tool} delivered ${run.received} of ${count} events`);
        runs[tool]?.push(run);
        console.error(`import ${tool}: ${Math.round(run.eventsPerSecond)} events/s, ${run.cpuUsPerEvent.toFixed(1)} µs CPU/event, peak RSS ${run.peakRssMb} MB`);
      }
    }
  } finally {
    fake.child.kill("SIGTERM");
  }
  const summary = Object.fromEntries(
    Object.entries(runs).map(([tool, list]) => [
      tool,
      { eventsPerSecond: median(list.map((r) => r.eventsPerSecond)), cpuUsPerEvent: median(list.map((r) => r.cpuUsPerEvent)), peakRssMb: Math.max(...list.map((r) => r.peakRssMb)) },
    ]),
  );
  results.import = { events: count, latencyMs: 100, inFlight: 10, runs, median: summary };
  for (const [tool, m] of Object.entries(summary)) {
    table.push([
      `import ${tool === "relay" ? "npm run import --via direct" : "mixpanel-import 3.1.43 (got transport)"}, ${count.toLocaleString("en-US")} events NDJSON.gz @100 ms, 10 in flight`,
      `${Math.round(m.eventsPerSecond)} events/s`,
      `${m.cpuUsPerEvent.toFixed(1)} µs CPU/event`,
      `peak RSS ${m.peakRssMb} MB`,
      "",
    ]);
  }
}

/** Native events like an export's: ~200 B each, 50k users, an `$insert_id` on each. */
function importFixture(count: number): Buffer {
  const start = Math.floor(Date.now() / 1000) - 30 * 86_400;
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    lines.push(JSON.stringify({ event: "Viewed Page", properties: { distinct_id: `user-${i % 50_000}`, time: start + (i % 86_400), $insert_id: `b${i.toString(36).padStart(10, "0")}`, page: `/p/${i % 1000}`, plan: i % 3 ? "pro" : "free", n: i } }));
  }
  return gzipSync(`${lines.join("\n")}\n`);
}

if (sections.has("forwarder") && sections.has("intake")) {
  const rows: CostRow[] = [];
  for (const variant of ["old", "new"] as const) {
    for (const [load, intakeKey, forwarderKey] of [
      ["Braze-like (100-event requests)", "braze", "braze"],
      ["bulk native (2000-event requests, ~600 B events)", "native", ""],
    ] as const) {
      const intake = intakeMedians[`${variant}:${intakeKey}`];
      const fwd = forwarderMedians[`${variant === "old" ? "old" : "deployed"}${forwarderKey ? "-braze" : ""}@100`];
      if (!intake || !fwd) continue;
      rows.push(
        costPerMillion({
          name: `${variant === "old" ? "baseline" : "new"}: ${load}`,
          eventsPerRequest: intake.eventsPerRequest,
          requestBytes: intake.requestBytes,
          intakeCpuMsPer10k: intake.cpuMsPer10k,
          sqsBytesPerEvent: intake.sqsBytesPerEvent,
          eventsPerMessage: 1 / intake.sqsMessagesPerEvent,
          messagesPerInvocation: Math.min(
            variant === "old" ? 20 : 100,
            Math.floor(6_291_456 / (intake.sqsBytesPerEvent / intake.sqsMessagesPerEvent)),
          ),
          forwarderEventsPerSecond: fwd.eventsPerSecond,
          // Today's code logs no per-event hash; the new one logs `"<8 base64url>",` per queued event (lib/observability/trace-ids.ts).
          logBytesPerEvent: variant === "old" ? 0 : INSERT_ID_HASH_LENGTH + 3,
        }),
      );
    }
  }
  results.costPerMillionEvents = { prices: PRICES_USD, assumptions: ASSUMPTIONS, rows };
  for (const row of rows) {
    table.push([
      `cost per 1M events, ${row.load}`,
      `Lambda $${row.usd.lambda.toFixed(4)} (${row.lambdaGbSeconds.toFixed(1)} GB-s, ${Math.round(row.lambdaRequests)} req)`,
      `SQS $${row.usd.sqs.toFixed(4)} (${Math.round(row.sqsRequests)} req)`,
      `API GW $${row.usd.apiGateway.toFixed(4)}, logs $${row.usd.logs.toFixed(4)}`,
      `total $${row.usd.total.toFixed(4)}`,
    ]);
  }
}

const widths = table.reduce<number[]>((w, row) => row.map((cell, i) => Math.max(w[i] ?? 0, cell.length)), []);
for (const row of table) console.log(row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join(" | "));
results.table = table;
mkdirSync(join(repo, "bench", "results"), { recursive: true });
const file = join(repo, "bench", "results", `${new Date().toISOString().slice(0, 10)}.json`);
writeFileSync(file, `${JSON.stringify(mergeWithEarlierRun(file, results), null, 2)}\n`);
console.log(`written ${file}`);

/**
 * A run of some sections (BENCH_SECTIONS) keeps the other sections of the same day's file, each
 * with the date of the run that measured it (`sectionDates`), instead of overwriting them.
 */
function mergeWithEarlierRun(path: string, current: Record<string, unknown>): Record<string, unknown> {
  const measured = Object.keys(current).filter((key) => !["date", "node", "machine", "baselineRef", "repeats", "note", "table"].includes(key));
  const sectionDates = Object.fromEntries(measured.map((key) => [key, current.date]));
  if (!existsSync(path)) return { ...current, sectionDates };
  let earlier: Record<string, unknown>;
  try {
    earlier = z.record(z.string(), z.unknown()).parse(JSON.parse(readFileSync(path, "utf8")));
  } catch {
    return { ...current, sectionDates };
  }
  const earlierDates = z.record(z.string(), z.unknown()).catch({}).parse(earlier.sectionDates);
  const kept = Object.fromEntries(Object.entries(earlier).filter(([key]) => !measured.includes(key) && !["table", "sectionDates"].includes(key) && key in earlierDates));
  // Table rows start with their section's word ("forwarder", "intake", "bundle", "cohort", "cost"): keep the earlier rows of sections not re-measured.
  const prefixOf = (row: unknown): string => (Array.isArray(row) && typeof row[0] === "string" ? (row[0].split(" ")[0] ?? "") : "");
  const measuredPrefixes = new Set(table.map(prefixOf));
  const earlierTable = Array.isArray(earlier.table) ? earlier.table.filter((row) => !measuredPrefixes.has(prefixOf(row))) : [];
  return {
    ...kept,
    ...current,
    table: [...earlierTable, ...table],
    sectionDates: { ...Object.fromEntries(Object.keys(kept).map((key) => [key, earlierDates[key]])), ...sectionDates },
  };
}
